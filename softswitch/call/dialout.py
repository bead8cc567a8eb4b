"""The dial-out application: the caller is connected to an external number through a trunk
(out-of-hours overflow such as 12348 → a duty lawyer service, a `transfer` route or IVR node).

The far end sees the trunk's configured hotline number (SPEC SIP-4); the caller hears its
ringback (or early media) until it answers; a caller the node answered already (an IVR
caller, an agent the node called first) hears the node's ringing tone. A refusal ends the call with the far end's status
when the caller is not answered yet; an answered caller is hung up with BYE.
"""

from __future__ import annotations

from media.items import Tone
from softswitch.call.actions import Action, Bridge, CallNumber, Hangup, Play, Ring, StopPlay
from softswitch.call.app import CallView
from softswitch.call.events import AppEvent, LegAnswered, LegEnded, LegFailed, LegRinging, Started

#: What an answered caller hears while the far end rings (450 Hz, 1 s on, 4 s off).
RINGING_TONE = Tone(450.0, level_dbm0=-13.0, on_ms=1000, off_ms=4000, repeats=0)


class DialOutApp:
    name = "dialout"

    def __init__(self, number: str, trunk: str | None = None) -> None:
        self.number = number
        self.trunk = trunk
        self.leg_id: str | None = None
        self.connected = False
        self.ringing = False  # the node's ringing tone plays to the caller

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        if isinstance(event, Started):
            self.leg_id = call.new_leg_id()
            out: list[Action] = []
            if call.caller_answered:
                out.append(StopPlay(call.caller_leg))
            out.append(CallNumber(self.number, self.leg_id, self.trunk))
            return out
        if getattr(event, "leg_id", None) != self.leg_id:
            return []
        if isinstance(event, LegRinging):
            if not call.caller_answered:
                return [Ring(call.caller_leg, event.status, from_leg=self.leg_id)]
            if not self.ringing:
                self.ringing = True
                return [Play(call.caller_leg, (RINGING_TONE,), tag="ringing")]
            return []
        if isinstance(event, LegAnswered):
            self.connected = True
            assert self.leg_id is not None
            stop: list[Action] = [StopPlay(call.caller_leg)] if self.ringing else []
            return [*stop, Bridge(call.caller_leg, self.leg_id)]
        if isinstance(event, LegFailed):
            status = event.status if 400 <= event.status < 700 else 480
            return [Hangup(status=status, disposition="dialout_failed")]
        if isinstance(event, LegEnded):
            return [Hangup(status=480, disposition="answered")]
        return []
