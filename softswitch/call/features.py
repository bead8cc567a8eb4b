"""What an agent's phone does inside a call, answered by the node itself: hold (the node
answers the phone's hold offer from its anchor, takes the caller out of the bridge and lets
the application play music to the caller) and blind transfer (REFER, RFC 3515: the node
resolves the Refer-To, answers 202, hands the caller to a queue, an agent, a flow or an
external number, reports the outcome in NOTIFY and hangs the phone's leg up). A part of
`CallControl` (softswitch/call/control.py).

An attended transfer (REFER with Replaces, RFC 3891) names the agent's consultation
call, one its phone placed (to another agent, or out through the trunk): the consulted
party's leg moves into the caller's call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acd import AcdError
from media import MediaError
from media.items import Tone
from softswitch.call import events as ev
from softswitch.call.actions import AddParty, AgentCommand, PickUp, Supervise
from softswitch.call.base import ControlBase
from softswitch.call.leg import Leg, LegEvent, LegState
from softswitch.call.session import Session
from softswitch.call.sipcodec import sdp_direction
from softswitch.sip.build import make_response
from softswitch.sip.errors import SipParseError
from softswitch.sip.headers import parse_uri, unescape
from softswitch.sip.message import parse_name_addr
from softswitch.sip.transaction import RequestReceived

if TYPE_CHECKING:
    from softswitch.config import Config

#: RFC 3515 §2.4.5: the body type of the NOTIFYs that report a REFER's progress.
SIPFRAG = "message/sipfrag;version=2.0"
#: The mix of a supervised call, and what its agent hears as a supervisor barges in.
SUPERVISE_MIX = "supervise"
BARGE_TONE = Tone(1000.0, level_dbm0=-10.0, on_ms=200, off_ms=0, repeats=1)
#: The engine's method for each state feature code.
STATE_METHODS = {
    "login": "agent_login",
    "logout": "agent_logout",
    "ready": "agent_ready",
    "wrap_up_end": "agent_ready",
    "not_ready": "agent_not_ready",
}


class Attended(Exception):  # noqa: N818 (a branch of REFER handling, not an error)
    """The REFER carries Replaces: an attended transfer (`Features._attended`)."""

    def __init__(self, replaces: str) -> None:
        super().__init__(replaces)
        self.replaces = replaces


class TransferError(Exception):
    """A REFER the node will not carry out: the status and reason phrase to answer it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def refer_user(request_value: str) -> tuple[str, str | None]:
    """The user part of a Refer-To value (unescaped) and its Replaces value, unescaped
    (an attended transfer), or None. Raises `TransferError` (400) when it is not a usable
    URI."""
    try:
        uri = parse_name_addr(request_value).uri
    except SipParseError as exc:
        raise TransferError(400, f"Bad Refer-To ({exc})") from None
    parsed = parse_uri(uri)
    if parsed.scheme == "tel":
        number = parsed.opaque.split(";")[0]
        return number, None
    if not parsed.is_sip or not parsed.user:
        raise TransferError(400, "Refer-To names no user")
    replaces = None
    for part in (parsed.uri_headers or "").split("&"):
        name, _, value = part.partition("=")
        if name.lower() == "replaces":
            replaces = unescape(value)
    return unescape(parsed.user), replaces


def parse_replaces(value: str) -> tuple[str, str, str]:
    """(Call-ID, to-tag, from-tag) of a Replaces value (RFC 3891 §6.1); 400 when one is
    missing. The to-tag is the far end's tag as the referrer sees the dialog: the node's
    own tag of the consultation call."""
    call_id, *params = value.split(";")
    tags = {}
    for param in params:
        name, _, tag = param.partition("=")
        tags[name.strip().lower()] = tag.strip()
    if not call_id.strip() or not tags.get("to-tag") or not tags.get("from-tag"):
        raise TransferError(400, "Replaces needs a Call-ID, a to-tag and a from-tag")
    return call_id.strip(), tags["to-tag"], tags["from-tag"]


def resolve_transfer(
    config: Config,
    user: str,
    transferrer: str | None,
    caller: str,
    current_queue: str | None,
    agent_queues: dict[str, tuple[str, ...]],
    trunk: str,
) -> ev.TransferTarget:
    """Where a transfer to `user` sends the caller, on the configuration the call started
    with: an agent id, a queue name, a dialplan route (queue, flow or external number), else
    an external number through the call's trunk. `agent_queues`: the queues each logged-in
    agent serves (the ACD's view). Raises `TransferError` with the answer to the REFER."""
    agent = config.agent(user)
    if agent is not None:
        if user == transferrer:
            raise TransferError(403, "Cannot transfer to yourself")
        served = agent_queues.get(user)
        if served is None:
            raise TransferError(480, f"Agent {user} is not logged in")
        if not served:
            raise TransferError(480, f"Agent {user} serves no queue")
        queue = current_queue if current_queue in served else served[0]
        return ev.TransferTarget("agent", user, queue=queue)
    if config.queue(user) is not None:
        return ev.TransferTarget("queue", user)
    result = config.dialplan.route(user, caller)
    if result.route is not None:
        if result.respond is not None:
            raise TransferError(result.respond, result.reason or "Refused by the dialplan")
        if result.queue is not None:
            return ev.TransferTarget("queue", result.queue)
        if result.flow is not None:
            return ev.TransferTarget("flow", result.flow)
        if result.transfer is not None:
            return _external(config, result.transfer, result.transfer_trunk or trunk, transferrer)
    if user.lstrip("+").isdigit():
        return _external(config, user, trunk, transferrer)
    raise TransferError(404, f"No agent, queue or route {user}")


def _external(config: Config, number: str, trunk: str, agent_id: str | None) -> ev.TransferTarget:
    agent = config.agent(agent_id) if agent_id else None
    if agent is None or "transfer_external" not in agent.features:
        raise TransferError(403, "Transfer to external numbers not allowed for this agent")
    found = next((t for t in config.trunks if t.name == trunk), None)
    if found is None or not found.dials_out:
        raise TransferError(503, f"Trunk {trunk} cannot place outbound calls")
    return ev.TransferTarget("number", number, trunk=trunk)


class Features(ControlBase):
    # --- hold -----------------------------------------------------------------------------
    def _agent_hold(self, session: Session, leg: Leg, event: RequestReceived, now: float) -> bool:
        """A re-INVITE/UPDATE with SDP from an agent's phone bridged to the caller, both
        anchored: the node answers it from its anchor. A hold (sendonly/inactive) takes the
        caller out of the bridge, a resume puts it back; the application hears `LegHeld`.
        False: not such a request (the caller relays it as before)."""
        request = event.request
        other = leg.peer
        if (
            leg is session.a
            or leg.agent_id is None
            or other is not session.a
            or not request.body
            or not (leg.anchored and other.anchored)
        ):
            return False
        held_before = leg.state is LegState.HELD
        wants_hold = sdp_direction(request.body) in ("sendonly", "inactive")
        if not held_before and not wants_hold:
            return False  # a plain re-offer (codec change, refresh): relayed as before
        assert leg.dialog is not None
        leg.dialog.update_target(request)
        try:
            body = self.media.answer_local(leg.leg_id, request.body)
        except (MediaError, ValueError) as exc:
            session.log.warning("hold offer of agent %s refused by media: %s", leg.agent_id, exc)
            self._respond(event.key, make_response(request, 488), now)
            return True
        self._hold_state(leg, request.body)
        extra = [
            ("contact", self._contact(leg)),
            ("content-type", "application/sdp"),
        ]
        self._respond(event.key, make_response(request, 200, body=body, extra=extra), now)
        held = leg.state is LegState.HELD
        if held == held_before:
            return True
        if session.supervisor is not None:
            self._end_supervision(session, now)
        if held:
            self.media.unbridge(leg.leg_id)
        else:
            self.media.bridge(other.leg_id, leg.leg_id)
        if session.queue is not None:  # a queue call: the agent is on hold in the ACD
            self.port.held(session.call_id, leg.agent_id, held, now)
        what = "HOLD" if held else "UNHOLD"
        session.log.info("agent %s %s the caller", leg.agent_id, "held" if held else "resumed")
        self.bus.publish(
            ev.QueueLogged(self.wall(now), session.call_id, session.queue, leg.agent_id, what, None)
        )
        self._deliver(session, ev.LegHeld(leg.leg_id, held), now)
        return True

    # --- blind transfer -------------------------------------------------------------------
    def _refer(self, session: Session, leg: Leg, event: RequestReceived, now: float) -> None:
        """REFER from a party of the call (RFC 3515)."""
        request = event.request
        try:
            try:
                target = self._transfer_target(session, leg, request.headers.get_all("refer-to"))
            except Attended as attended:
                self._attended(session, leg, event, attended.replaces, now)
                return
        except TransferError as exc:
            session.log.info("transfer by %s refused: %d %s", leg.leg_id, exc.status, exc.reason)
            self._respond(event.key, make_response(request, exc.status, exc.reason), now)
            return
        self._accept_refer(session, leg, event, {"to": target.kind, "target": target.value}, now)
        session.transfer = leg.leg_id
        session.log.info(
            "agent %s transfers the caller to %s %s", leg.agent_id, target.kind, target.value
        )
        self._deliver(session, ev.TransferRequested(leg.leg_id, target), now)

    def _accept_refer(
        self, session: Session, leg: Leg, event: RequestReceived, data: dict, now: float
    ) -> None:
        """A REFER the node carries out: 202, the first NOTIFY (RFC 3515 §2.4.4) and the
        queue log's TRANSFER line with `data`."""
        contact = [("contact", self._contact(leg))]
        self._respond(event.key, make_response(event.request, 202, extra=contact), now)
        self._notify(session, leg, "SIP/2.0 100 Trying", final=False, now=now)
        self.bus.publish(
            ev.QueueLogged(
                self.wall(now), session.call_id, session.queue, leg.agent_id, "TRANSFER", data
            )
        )

    def _attended(
        self, session: Session, leg: Leg, event: RequestReceived, replaces: str, now: float
    ) -> None:
        """An attended transfer: the agent's REFER names (Replaces) its consultation call
        with another party, a call the agent's phone placed. That party's leg moves into
        this call and is bridged to the caller; the agent's legs in both calls are hung up
        and the consultation call ends (CDR `transferred`)."""
        if getattr(session.app, "name", "") != "queue":
            raise TransferError(403, "Attended transfer is for queue calls")
        call_id, to_tag, from_tag = parse_replaces(replaces)
        found = self._dialogs.get((call_id, to_tag, from_tag))
        if found is None:
            raise TransferError(481, "The consultation call is not known")
        consult, consult_leg = found
        if (
            consult is session
            or consult.ended
            or consult_leg is not consult.a
            or consult.caller != leg.agent_id
        ):
            raise TransferError(403, "Replaces names no consultation call of this agent")
        parties = [other for other in consult.legs[1:] if other.up]
        if len(parties) != 1:
            raise TransferError(403, "The consultation call is not answered")
        target = parties[0]
        if not (target.anchored and session.a.anchored):
            raise TransferError(488, "The consultation call's media cannot be joined")
        who = target.agent_id or "an outside party"
        data = {"to": "attended", "target": who, "consultation": consult.call_id}
        self._accept_refer(session, leg, event, data, now)
        if consult.supervisor is not None:
            self._end_supervision(consult, now)
        self._unpeer(target)
        self._move_leg(target, consult, session, now)
        self._bye(consult, consult.a, now)  # the agent's own consultation leg
        consult.a.media.release(consult.a.leg_id)
        self._leg_stopped(consult, consult.a, now, "transferred")
        self._retire(consult, now, "transferred")
        session.log.info("agent %s transfers the caller to %s (attended)", leg.agent_id, who)
        replaced = ev.LegReplaced(leg.leg_id, target.leg_id, target.agent_id, consult.call_id)
        self._deliver(session, replaced, now)
        session.transfer = leg.leg_id
        self._transfer_done(session, now)

    def _transfer_target(
        self, session: Session, leg: Leg, refer_to: list[str]
    ) -> ev.TransferTarget:
        if leg is session.a or leg.agent_id is None:
            raise TransferError(403, "Only an agent's phone may transfer this call")
        if session.transfer is not None:
            raise TransferError(491, "A transfer is already in progress")
        if leg.peer is not session.a or not session.a.up:
            raise TransferError(403, "No caller to transfer")
        if len(refer_to) != 1:
            raise TransferError(400, "Exactly one Refer-To required")
        user, replaces = refer_user(refer_to[0])
        if replaces is not None:
            raise Attended(replaces)
        queues: dict[str, tuple[str, ...]] = {}
        agent = session.config.agent(user)
        if agent is not None:
            try:
                snap = self.acd.agent_snapshot(user)
            except AcdError:
                snap = None
            if snap is not None and snap.state not in ("logged_out", "locked"):
                queues[user] = snap.queues
        return resolve_transfer(
            session.config, user, leg.agent_id, session.caller, session.queue, queues,
            session.trunk,
        )  # fmt: skip

    def _transfer_done(self, session: Session, now: float) -> None:
        """The application handed the caller on for a transfer: the phone hears that it
        worked and its leg is hung up."""
        leg_id, session.transfer = session.transfer, None
        leg = session.leg(leg_id) if leg_id else None
        if leg is None or not leg.up:
            return
        self._notify(session, leg, "SIP/2.0 200 OK", final=True, now=now)
        if session.supervisor is not None:
            self._end_supervision(session, now)
        self._unpeer(leg)
        self._leg_stopped(session, leg, now, "transferred")
        self._bye(session, leg, now)
        self._leave_mixes(session, leg, now)

    def _transfer_failed(self, session: Session, now: float) -> None:
        """The application did not hand the caller on: the phone hears the transfer failed
        and keeps the call."""
        leg_id, session.transfer = session.transfer, None
        leg = session.leg(leg_id) if leg_id else None
        session.log.warning("transfer by %s not carried out by %s", leg_id, session.app)
        if leg is not None and leg.up:
            self._notify(session, leg, "SIP/2.0 503 Service Unavailable", final=True, now=now)

    def _notify(self, session: Session, leg: Leg, frag: str, final: bool, now: float) -> None:
        if leg.dialog is None:
            return
        state = "terminated;reason=noresource" if final else "active;expires=60"
        request = leg.dialog.new_request(
            "NOTIFY",
            f"{frag}\r\n".encode(),
            [("event", "refer"), ("subscription-state", state), ("content-type", SIPFRAG)],
        )
        request.headers.add("contact", self._contact(leg))
        key = self.txn.send_request(request, leg.target, now)
        self._clients[key] = (session, leg, "notify", None)

    # --- agent state from the phone -------------------------------------------------------
    def _agent_command(self, session: Session, action: AgentCommand, now: float) -> None:
        """A state feature code: the engine's refusal (ready while logged out …) is the
        result, not an error of the call."""
        name = STATE_METHODS[action.action]
        method = getattr(self.acd, name)
        try:
            if action.action == "not_ready":
                self.acd_command(now, method, action.agent_id, now, action.reason or "not_ready")
            else:
                self.acd_command(now, method, action.agent_id, now)
        except AcdError as exc:
            session.log.info("agent %s %s refused: %s", action.agent_id, action.action, exc)
            self._deliver(session, ev.CommandResult(action.action, False, str(exc)), now)
            return
        state = self.acd.agent_state(action.agent_id).value
        session.log.info(
            "agent %s %s from the phone: now %s", action.agent_id, action.action, state
        )
        self._deliver(session, ev.CommandResult(action.action, True, state), now)

    # --- supervisor: monitor, whisper, barge ----------------------------------------------
    def _supervise(self, session: Session, action: Supervise, now: float) -> None:
        """Mix the supervisor's leg (this session's caller leg) into the call the agent is
        talking on. The mix belongs to that call; the two parties stay each other's peers
        (their bridge comes back when the supervision ends)."""
        sup = session.a
        found = self._talking(action.agent_id)
        if found is None or not sup.up or not sup.anchored:
            why = "the agent is not on a call the node can mix"
            self._deliver(session, ev.CommandResult("supervise", False, why), now)
            return
        target, agent_leg = found
        if target.supervisor not in (None, session.call_id):
            why = "another supervisor is on that call"
            self._deliver(session, ev.CommandResult("supervise", False, why), now)
            return
        caller = agent_leg.peer  # the caller, or whom the node called for the agent
        assert caller is not None
        s, c, g = sup.leg_id, caller.leg_id, agent_leg.leg_id
        # Who hears whom: the supervisor hears both; the agent hears the supervisor from a
        # whisper on; the caller only in a barge.
        hears: dict[str, tuple[str, ...]] = {s: (c, g), c: (g,), g: (c,)}
        if action.mode in ("whisper", "barge"):
            hears[g] = (c, s)
        if action.mode == "barge":
            hears[c] = (g, s)
        if action.mode == "barge":  # the agent is told: playback goes before the mix
            self.media.play(g, [BARGE_TONE])
        self.media.mix(f"{target.call_id}-{SUPERVISE_MIX}", hears)
        target.mixes[SUPERVISE_MIX] = hears
        target.supervisor = session.call_id
        session.supervising = target.call_id
        supervisor = session.caller
        self.bus.publish(ev.MixChanged(self.wall(now), target.call_id, SUPERVISE_MIX, hears))
        self.bus.publish(
            ev.QueueLogged(
                self.wall(now),
                target.call_id,
                target.queue,
                action.agent_id,
                action.mode.upper(),
                {"supervisor": supervisor},
            )  # fmt: skip
        )
        target.log.info("supervisor %s: %s agent %s", supervisor, action.mode, action.agent_id)
        self._deliver(session, ev.CommandResult("supervise", True, action.mode), now)

    def _talking(self, agent_id: str) -> tuple[Session, Leg] | None:
        """The call `agent_id` talks on: its leg bridged to the caller, both anchored (or,
        on a call the node placed to the agent first, the agent's own first leg bridged to
        whom it called)."""
        for session in self.sessions.values():
            if session.ended or session.supervising is not None:
                continue
            for leg in session.legs:
                peer = leg.peer
                if (
                    leg.agent_id == agent_id
                    and leg.up
                    and leg.anchored
                    and peer is not None
                    and (peer is session.a or leg is session.a)
                    and peer.up
                    and peer.anchored
                ):
                    return session, leg
        return None

    def _end_supervision(self, target: Session, now: float, hang_up: bool = True) -> None:
        """The supervised call changes (an end, a hold, a transfer) or the supervisor left:
        the mix goes, the parties' bridge comes back, and (`hang_up`) the supervisor's call
        ends."""
        sup_id, target.supervisor = target.supervisor, None
        if sup_id is None:
            return
        if target.mixes.pop(SUPERVISE_MIX, None) is not None:
            self.media.unmix(f"{target.call_id}-{SUPERVISE_MIX}")
            self.bus.publish(ev.MixChanged(self.wall(now), target.call_id, SUPERVISE_MIX, {}))
        caller = target.a
        agent_leg = caller.peer
        if not target.ended and caller.up and agent_leg is not None and agent_leg.up:
            if agent_leg.state is not LegState.HELD:
                self.media.bridge(caller.leg_id, agent_leg.leg_id)
        sup = self.sessions.get(sup_id)
        if sup is None:
            return
        sup.supervising = None
        if hang_up and not sup.ended:
            sup.log.info("the supervised call %s changed: ending the supervision", target.call_id)
            self._release(sup, now, "completed", "system", None, tell_app=False)

    # --- supervisor: force release ------------------------------------------------------
    def release_agent_call(self, agent_id: str, now: float) -> bool:
        """End the call agent `agent_id` is on (ringing or talking) for a supervisor: BYE to
        every party, CDR "released by supervisor". False: the agent is on no call."""
        for session in list(self.sessions.values()):
            if session.ended:
                continue
            if any(leg.agent_id == agent_id and (leg.up or leg.pending) for leg in session.legs):
                session.log.info("agent %s's call released by a supervisor", agent_id)
                self.bus.publish(
                    ev.QueueLogged(
                        self.wall(now),
                        session.call_id,
                        session.queue,
                        agent_id,
                        "RELEASED",
                        {"by": "supervisor"},
                    )  # fmt: skip
                )
                session.hangup_side = "supervisor"
                disposition = "answered" if session.answered is not None else "released"
                self._release(session, now, disposition, "supervisor", 480)
                self._drain()
                return True
        return False

    # --- three-way calls ----------------------------------------------------------------
    def _add_party(self, session: Session, action: AddParty, now: float) -> None:
        """The agent's conference feature code: the call it talks on rings the number as a
        third party (its application mixes the three once it answers)."""
        found = self._talking(action.agent_id)
        if found is None:
            self._deliver(session, ev.CommandResult("conference", False, "not on a call"), now)
            return
        target_session, _leg = found
        try:
            if target_session.config.agent(action.number) is not None:
                if action.number == action.agent_id:
                    raise TransferError(403, "Cannot add yourself")
                if not self.port.direct_started(action.number, target_session.call_id, now):
                    raise TransferError(486, f"Agent {action.number} is busy")
                target = ev.TransferTarget("agent", action.number)
            else:
                target = _external(
                    target_session.config, action.number, target_session.trunk,
                    action.agent_id,
                )  # fmt: skip
        except TransferError as exc:
            self._deliver(session, ev.CommandResult("conference", False, exc.reason), now)
            return
        self.bus.publish(
            ev.QueueLogged(
                self.wall(now),
                target_session.call_id,
                target_session.queue,
                action.agent_id,
                "CONFERENCE",
                {"target": action.number},
            )  # fmt: skip
        )
        target_session.log.info("agent %s adds %s to the call", action.agent_id, action.number)
        self._deliver(target_session, ev.ConferenceRequested(action.agent_id, target), now)
        self._deliver(session, ev.CommandResult("conference", True, action.number), now)

    # --- call pickup --------------------------------------------------------------------
    def _pickup(self, session: Session, action: PickUp, now: float) -> None:
        """`*8` / `**NNNN`: the picker's leg (this session's caller leg, not answered yet)
        is answered by the node and moves to the ringing call, whose application bridges
        it; this session ends (CDR `picked_up`)."""
        picker = session.a
        acd = self.acd
        try:
            if action.ringing_agent is not None:
                call_id = acd.ringing_at(action.ringing_agent)
            else:
                call_id = acd.ringing_for(action.agent_id)
            target = self.sessions.get(call_id) if call_id is not None else None
            if target is None or target.ended or call_id is None:
                raise TransferError(480, "Nothing rings to pick up")
            commands = acd.picked_up(call_id, action.agent_id, now)
        except (AcdError, TransferError) as exc:
            why = exc.reason if isinstance(exc, TransferError) else str(exc)
            self._deliver(session, ev.CommandResult("pickup", False, why), now)
            return
        assert picker.invite is not None and picker.dialog is not None
        body = self.media.answer_local(picker.leg_id, picker.offer or picker.invite.body)
        picker.anchored = True
        picker.agent_id = action.agent_id
        picker.to(LegEvent.ANSWER)
        extra = [
            ("contact", self._contact(picker)),
            ("content-type", "application/sdp"),
        ]
        ok = make_response(
            picker.invite, 200, to_tag=picker.dialog.local_tag, body=body, extra=extra
        )
        self._respond(picker.invite_key, ok, now)
        self._move_leg(picker, session, target, now)
        self._retire(session, now, "picked_up")
        target.log.info("agent %s picked the call up", action.agent_id)
        self.apply(commands, now)  # the other rings are withdrawn
        self._deliver(target, ev.PickedUp(picker.leg_id, action.agent_id), now)

    def _move_leg(self, leg: Leg, source: Session, target: Session, now: float) -> None:
        """An answered leg changes calls (a pickup, an attended transfer): its dialog, the
        transactions it waits on and its media events follow it; `LegJoined` tells the bus
        (the CDR row stays the leg's, the recorder adds its segment)."""
        source.legs.remove(leg)
        target.legs.append(leg)
        assert leg.dialog is not None
        self._dialogs[leg.dialog.id] = (target, leg)
        self._adopted[leg.leg_id] = target
        for key, entry in list(self._clients.items()):
            if entry[1] is leg:
                self._clients[key] = (target, *entry[1:])
        self.bus.publish(
            ev.LegJoined(self.wall(now), target.call_id, leg.leg_id, leg.agent_id, source.call_id)
        )

    def _retire(self, session: Session, now: float, disposition: str) -> None:
        """End a session whose parties went to another call: its CDR row closes, no SIP
        (a leg left is hung up by whoever retires it)."""
        session.ended = True
        dialog_ids = [leg.dialog.id for leg in session.legs if leg.dialog is not None]
        self._graveyard.append((now + self.cleanup_delay, [], dialog_ids))
        self.sessions.pop(session.call_id, None)
        if session.a.invite_key is not None:
            self._by_invite.pop(session.a.invite_key, None)
        if self._by_origin.get(session.origin) is session:
            del self._by_origin[session.origin]
        self.bus.publish(
            ev.CallEnded(
                self.wall(now),
                session.call_id,
                disposition,
                "agent",
                None,
                0.0,
                now - session.started,
                dict(session.variables),
            )  # fmt: skip
        )
