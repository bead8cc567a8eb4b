"""An agent registered from several devices (a desk phone and a softphone) rings on all of
them at once (RFC 3261 §16.7-style parallel forking by the node as UAC), a part of
`CallControl`.

The agent's leg is one leg for its application, with one attempt per registered contact:
the leg's own INVITE goes to the first binding, `Fork`s to the others, the same request
(Call-ID, From tag, CSeq, SDP offer of the leg's one media anchor) with its own Request-URI
and branch. The first 2xx wins: that attempt becomes the leg's (`_promote`), and every
other is CANCELled (at its first 1xx when it has none yet); a 2xx that still comes from a
loser is ACKed and hung up at the device that sent it. A device that refuses or does not
answer only drops out; the leg fails when the last attempt does, with the most telling
status of them (486 busy before 603 declined before the rest).
"""

from __future__ import annotations

from softswitch.call import events as ev
from softswitch.call.base import ControlBase
from softswitch.call.leg import Leg, LegEvent, LegState
from softswitch.call.session import Session
from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import DialogError, SipParseError
from softswitch.sip.message import Request, Response
from softswitch.sip.transaction import Target

#: Devices one agent is rung on at most (the registrar's other bindings are left out).
MAX_FORKS = 8
#: Which refusal says most about an agent (lower first); others count after these.
STATUS_RANK = {486: 0, 600: 1, 603: 2, 480: 3, 408: 4}


class Fork:
    """One more device of the agent's leg."""

    __slots__ = ("target", "invite", "key", "got_provisional", "cancel", "done")

    def __init__(self, target: Target, invite: Request) -> None:
        self.target = target
        self.invite = invite
        self.key: tuple | None = None
        self.got_provisional = False
        self.cancel = False  # CANCEL it (now, or at its first 1xx)
        self.done = False  # its final response (or timeout) is in


class Forking(ControlBase):
    def _fork(
        self,
        session: Session,
        leg: Leg,
        targets: list[tuple[str, Target, list[str]]],
        now: float,
    ) -> None:
        """Ring `targets` ((contact, where to send, its Route headers: the binding's Path))
        too, with the leg's INVITE."""
        assert leg.invite is not None
        for contact, target, route in targets[: MAX_FORKS - 1]:
            headers = leg.invite.headers.copy()
            headers.pop_first("via")
            while headers.pop_first("route") is not None:
                pass  # the first device's Path; each device has its own
            for value in route:
                headers.add("route", value)
            invite = Request("INVITE", contact, headers, leg.invite.body)
            fork = Fork(target, invite)
            fork.key = self.txn.send_request(invite, target, now)
            self._clients[fork.key] = (session, leg, "fork", fork)
            leg.forks.append(fork)
        session.log.info("agent %s rung on %d devices", leg.agent_id, 1 + len(leg.forks))

    def _fork_response(
        self, session: Session, leg: Leg, fork: Fork, event: object, now: float
    ) -> None:
        response: Response = event.response  # type: ignore[attr-defined]
        status = response.status
        if status < 200:
            fork.got_provisional = True
            if fork.cancel or not leg.pending or session.ended:
                self._cancel_fork(fork, now)
                return
            if status > 100 and leg.state is LegState.CALLING:
                leg.got_provisional = True
                leg.to(LegEvent.PROVISIONAL)
                self._deliver(session, ev.LegRinging(leg.leg_id, status), now)
            return
        fork.done = True
        if status < 300:
            if leg.pending and leg.dialog is None and not session.ended and not fork.cancel:
                self._promote(session, leg, fork)
                self._invite_response(session, leg, event, now)  # type: ignore[arg-type]
                self._cancel_forks(leg, now)
                return
            self._hang_up_fork(fork, response, now)
            return
        self._clients.pop(fork.key, None)  # type: ignore[arg-type]
        self._note_refusal(leg, status)
        if fork in leg.forks:
            leg.forks.remove(fork)

    def _fork_timeout(self, leg: Leg, fork: Fork) -> None:
        fork.done = True
        self._note_refusal(leg, 408)
        if fork in leg.forks:
            leg.forks.remove(fork)

    def _promote(self, session: Session, leg: Leg, fork: Fork) -> None:
        """`fork` takes the leg's place as its attempt; the leg's own becomes a fork."""
        assert leg.invite is not None and leg.invite_key is not None and fork.key is not None
        old = Fork(leg.target, leg.invite)
        old.key, old.got_provisional = leg.invite_key, leg.got_provisional
        leg.forks.remove(fork)
        leg.forks.append(old)
        self._clients[old.key] = (session, leg, "fork", old)
        leg.target, leg.invite, leg.invite_key = fork.target, fork.invite, fork.key
        leg.got_provisional = leg.got_provisional or fork.got_provisional
        self._clients[fork.key] = (session, leg, "invite", None)

    def _next_attempt(self, session: Session, leg: Leg, status: int) -> bool:
        """The leg's own attempt failed: a device still ringing takes its place (True);
        False when none is left (the leg fails)."""
        self._note_refusal(leg, status)
        live = [f for f in leg.forks if not f.done and not f.cancel]
        if not live:
            return False
        fork = live[0]
        leg.forks.remove(fork)
        leg.target, leg.invite, leg.invite_key = fork.target, fork.invite, fork.key
        leg.got_provisional = fork.got_provisional
        assert fork.key is not None
        self._clients[fork.key] = (session, leg, "invite", None)
        return True

    def _leg_refusal(self, leg: Leg, status: int) -> int:
        """The status the leg fails with: the most telling of its devices' refusals."""
        best = leg.refusal
        if best is None:
            return status
        return min(best, status, key=lambda s: (STATUS_RANK.get(s, 9), s))

    @staticmethod
    def _note_refusal(leg: Leg, status: int) -> None:
        best = leg.refusal
        if best is None or (STATUS_RANK.get(status, 9), status) < (STATUS_RANK.get(best, 9), best):
            leg.refusal = status

    def _cancel_forks(self, leg: Leg, now: float) -> None:
        for fork in leg.forks:
            if not fork.done and not fork.cancel:
                fork.cancel = True
                if fork.got_provisional:
                    self._cancel_fork(fork, now)

    def _cancel_fork(self, fork: Fork, now: float) -> None:
        fork.cancel = True
        if fork.key is not None and fork.got_provisional and not fork.done:
            self.txn.send_cancel(fork.key, now)
            fork.done = True  # its 487 (or a crossing 2xx) is handled as a loser's

    def _hang_up_fork(self, fork: Fork, response: Response, now: float) -> None:
        """A 2xx from a device that lost: ACK it and hang it up there (RFC 3261 §13.2.2.4)."""
        try:
            dialog = Dialog.as_uac(fork.invite, response)
        except (DialogError, SipParseError):
            return
        self.txn.send_ack(dialog.ack(fork.invite.cseq[0]), fork.target)
        self.txn.send_request(dialog.new_request("BYE"), fork.target, now)
