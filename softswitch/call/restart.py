"""Calls a crash left behind: what the node keeps while they run, and what it does about
them when it starts again (sans-IO).

While the node runs, `DialogRecorder` (a bus subscriber) saves for every answered leg what
hanging it up later takes (`SavedDialog`: the dialog's identifiers, URIs, route set and our
CSeq, and where its party was reached) when the answer is published, and removes it when
the leg stops, in the transaction the CDR rows of that input commit in: one small row per
answered leg, nothing per packet.

When the node starts, `close_unfinished` closes every call and leg row that has no end:
the end is the last moment the node is known to have been alive (its heartbeat, or a
later time written for a call), the disposition `node_restart`, talk and wait computed as
for a call ending then. It returns the saved dialogs of the legs it closed; once the
transports are up, `RestartByes` sends each party a BYE through the transaction layer (so
it is retransmitted) and logs how each one ended. A BYE that fails is logged, not fatal.

What cannot be known: a target refresh (re-INVITE) after the answer changes the remote
target without the saved row learning it; the BYE then goes to the first one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import msgspec

from softswitch.call import events as ev
from softswitch.call.session import Session
from softswitch.call.sipcodec import hop_target
from softswitch.sip.dialog import Dialog, DialogState
from softswitch.sip.errors import SipError
from softswitch.sip.message import Request
from softswitch.sip.transaction import (
    ResponseReceived,
    Target,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
)

__all__ = [
    "CSEQ_SKIP",
    "RESTART_DISPOSITION",
    "DialogRecorder",
    "Recovered",
    "RestartByes",
    "SavedDialog",
    "close_call",
    "close_leg",
    "close_unfinished",
    "last_alive",
    "restart_bye",
]

log = logging.getLogger("hotline.restart")

#: The disposition (and leg disposition) of a row closed because the node restarted.
RESTART_DISPOSITION = "node_restart"
#: How far the CSeq of a BYE after a restart skips ahead of the saved one: the node may have
#: sent requests in the dialog after it was saved (relayed re-INVITE, UPDATE, INFO), whose
#: numbers the saved row does not know. RFC 3261 §12.2.2: a UAS takes a CSeq higher than the
#: last by more than one ("not an error condition"); a lower one it refuses with 500.
CSEQ_SKIP = 1000
#: Reason of those BYEs (RFC 3326), for the parties' logs.
RESTART_REASON = 'SIP;cause=503;text="hotline node restarted"'

_CALL_TIMES = ("start", "queued", "ringing", "answer", "node_answer")
_LEG_TIMES = ("start", "ringing", "answer")


class SavedDialog(msgspec.Struct, frozen=True):
    """An answered leg's dialog as saved while the call runs, and where its party was
    reached (`target`: the leg's transport target when it was answered)."""

    leg_id: str
    call_id: str
    dialog: DialogState
    target: Target


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SavedDialog)


class DialogStore(Protocol):
    """Where saved dialogs go (`softswitch.cdr.CdrStore`)."""

    def save_dialog(self, leg_id: str, call_id: str, dialog: str) -> None: ...

    def drop_dialog(self, leg_id: str) -> None: ...


class DialogRecorder:
    """Bus subscriber: a leg's dialog is saved when it is answered (the agent's 200, the
    caller answered by the node or bridged to an agent) and dropped when the leg stops.

    `sessions` is call control's live map of sessions, where each event's leg is found."""

    kinds = (ev.LegProgress, ev.CallAnswered, ev.CallAnsweredByNode, ev.LegStopped)

    def __init__(self, store: DialogStore, sessions: Mapping[str, Session]) -> None:
        self.store = store
        self.sessions = sessions
        self.saved: set[str] = set()  # leg ids with a row, so unanswered legs cost nothing

    def __call__(self, event: Any) -> None:
        if isinstance(event, ev.LegStopped):
            if event.leg_id in self.saved:
                self.saved.discard(event.leg_id)
                self.store.drop_dialog(event.leg_id)
        elif isinstance(event, ev.LegProgress):
            if event.what == "answer":
                self._save(event.call_id, event.leg_id)
        elif isinstance(event, ev.CallAnswered):
            self._save(event.call_id, event.caller_leg)
        elif isinstance(event, ev.CallAnsweredByNode):
            self._save(event.call_id, event.leg_id)

    def _save(self, call_id: str, leg_id: str) -> None:
        if leg_id in self.saved:
            return
        session = self.sessions.get(call_id)
        leg = session.leg(leg_id) if session is not None else None
        if leg is None or leg.dialog is None or not leg.up:
            return
        saved = SavedDialog(leg_id, call_id, leg.dialog.state(), leg.target)
        self.store.save_dialog(leg_id, call_id, _encoder.encode(saved).decode())
        self.saved.add(leg_id)


# ------------------------------------------------------------------------- at start


def last_alive(heartbeat: float | None, rows: Iterable[Mapping[str, Any]]) -> float | None:
    """The last moment the node is known to have run: its heartbeat, or any later time
    written in the unfinished `rows` (the node wrote it, so it was running then)."""
    times = [heartbeat] if heartbeat is not None else []
    for row in rows:
        times += [t for name in _CALL_TIMES if isinstance(t := row.get(name), int | float)]
    return max(times) if times else None


def _end(row: Mapping[str, Any], alive: float, names: tuple[str, ...]) -> float:
    """`alive`, or the latest of the row's times `names` if one is later."""
    return max([alive, *(t for name in names if (t := row.get(name)) is not None)])


def close_call(row: Mapping[str, Any], alive: float) -> dict[str, Any]:
    """The columns that close an unfinished call row: it ended at `alive` (never before a
    time already in the row), talk and wait as `CallControl._release` counts them."""
    end = _end(row, alive, _CALL_TIMES)
    answer = row.get("answer")
    return {
        "end": end,
        "talk": end - answer if answer is not None else 0.0,
        "wait": (answer if answer is not None else end) - row["start"],
        "disposition": RESTART_DISPOSITION,
        "hangup_side": "system",
    }


def close_leg(row: Mapping[str, Any], alive: float) -> dict[str, Any]:
    """The columns that close an unfinished leg row (see `close_call`)."""
    return {"end": _end(row, alive, _LEG_TIMES), "disposition": RESTART_DISPOSITION}


class Recovered(msgspec.Struct, frozen=True):
    """What `close_unfinished` did: rows closed, their end, the dialogs to hang up."""

    calls: int
    legs: int
    end: float | None
    dialogs: list[SavedDialog]


class RecoveryStore(DialogStore, Protocol):
    """What `close_unfinished` needs of the CDR store (`softswitch.cdr.CdrStore`)."""

    def last_alive(self) -> float | None: ...

    def unfinished(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...

    def saved_dialogs(self) -> list[tuple[str, str, str]]: ...

    def clear_dialogs(self) -> None: ...

    def call_update(self, call_id: str, **fields: Any) -> None: ...

    def leg_update(self, leg_id: str, **fields: Any) -> None: ...


def close_unfinished(store: RecoveryStore) -> Recovered:
    """Close the rows a crash left without an end and take the saved dialogs of their legs
    (the table is emptied: each gets one BYE). Call before the node handles any message;
    the caller commits. A saved dialog that cannot be read is logged and skipped."""
    dialogs: list[SavedDialog] = []
    for leg_id, _call_id, text in store.saved_dialogs():
        try:
            dialogs.append(_decoder.decode(text))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("saved dialog of leg %s unreadable, its party gets no BYE: %s", leg_id, exc)
    store.clear_dialogs()
    calls, legs = store.unfinished()
    alive = last_alive(store.last_alive(), [*calls, *legs])
    if alive is None:
        return Recovered(0, 0, None, dialogs)
    for row in calls:
        store.call_update(row["call_id"], **close_call(row, alive))
    for row in legs:
        store.leg_update(row["leg_id"], **close_leg(row, alive))
    return Recovered(len(calls), len(legs), alive, dialogs)


def restart_bye(saved: SavedDialog) -> tuple[Request, Target]:
    """The BYE that ends a saved dialog after a restart, and where it goes.

    Over UDP it goes where the leg's requests went (the party's address as the node saw
    it, NAT included). A TCP or TLS connection died with the old process: the BYE goes to
    the dialog's next hop (route set, else the remote target, RFC 3261 §12.2.1.1) instead.
    Raises `SipError` (a `DialogError` or `SipParseError`) for saved state it cannot use.
    """
    dialog = Dialog.from_state(saved.dialog)
    dialog.local_cseq += CSEQ_SKIP
    bye = dialog.new_request("BYE", extra=[("reason", RESTART_REASON)])
    target = saved.target
    if target.transport != "UDP":
        target = hop_target(dialog, target.transport)
    return bye, target


class RestartByes:
    """The BYEs of a restart, by client transaction, until each has its final answer."""

    def __init__(self) -> None:
        self.pending: dict[tuple, SavedDialog] = {}
        self.counters = {"sent": 0, "answered": 0, "failed": 0}

    def send(self, txn: TransactionLayer, dialogs: Iterable[SavedDialog], now: float) -> None:
        """A BYE to the party of each dialog (see `restart_bye`)."""
        for saved in dialogs:
            try:
                bye, target = restart_bye(saved)
                key = txn.send_request(bye, target, now)
            except SipError as exc:
                self.counters["failed"] += 1
                log.error(
                    "call %s leg %s: no BYE after restart: %s", saved.call_id, saved.leg_id, exc
                )
                continue
            self.pending[key] = saved
            self.counters["sent"] += 1
            log.info(
                "call %s leg %s: BYE after restart to %s:%d",
                saved.call_id,
                saved.leg_id,
                target.host,
                target.port,
            )

    def handle(self, event: Any) -> bool:
        """Whether `event` belongs to one of these BYEs (then it is logged and consumed)."""
        if not isinstance(event, ResponseReceived | TransactionTimeout | TransportError):
            return False
        saved = self.pending.get(event.key)
        if saved is None:
            return False
        if isinstance(event, ResponseReceived):
            status = event.response.status
            if status < 200:
                return True
            outcome = f"answered {status}"
            ok = status < 300 or status == 481  # 481: the party had already hung up
        else:
            outcome = "timed out" if isinstance(event, TransactionTimeout) else "not sent"
            ok = False
        del self.pending[event.key]
        self.counters["answered" if ok else "failed"] += 1
        (log.info if ok else log.warning)(
            "call %s leg %s: BYE after restart %s", saved.call_id, saved.leg_id, outcome
        )
        return True
