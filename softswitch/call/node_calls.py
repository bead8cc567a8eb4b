"""Calls the node places itself (SPEC ACD-7, ACD-8): a callback task the node dials for an
agent, and a supervisor's monitor, whisper or barge started from the CLI.

The node rings the agent's phone first (its registered contact, or its mobile number
through the trunk), as the session's own first leg (`CallControl.originate`); once the
agent answers, the application of the same call dialled from that phone takes over as if
the phone had dialled it: `CallbackApp` dials the caller back through the trunk as the
hotline (the agent hears the node's ringing tone meanwhile), `SuperviseApp` mixes the
supervisor into the agent's call. Agent first, so a citizen called back never waits for an
agent, and a supervisor's phone is not mixed in before someone picks it up. A phone that
does not answer within the ring timeout (the queue's `ring_timeout` for a callback) is
given up, `no_answer`.

While the call lasts the agent is on a direct call in the ACD (offered no queue call): the
switch reserves it before placing the call, so a busy agent is refused at once, and call
control ends the reservation with the call (`Session.direct_agent`).
"""

from __future__ import annotations

from softswitch.call.actions import Action, CallAgent, CancelTimer, Hangup, StartTimer
from softswitch.call.app import Application, CallView
from softswitch.call.events import AppEvent, LegAnswered, LegFailed, Started, TimerFired

#: Seconds the agent's phone rings before the node gives the call up (no queue given).
RING_TIMEOUT = 30.0


class NodeCallApp:
    """Rings agent `agent_id` first, for up to `ring_timeout` seconds, then hands the
    answered call to `then`; `queue`: the queue the call is for (its phone's screen pop and
    auto-answer, as for a queue call)."""

    def __init__(
        self, agent_id: str, then: Application, queue: str = "", ring_timeout: float = RING_TIMEOUT
    ) -> None:
        self.agent_id = agent_id
        self.then = then
        self.queue = queue
        self.ring_timeout = ring_timeout
        self.answered = False
        self.name = f"node:{then.name}"

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        if self.answered:
            return self.then.handle(call, event, now)
        if isinstance(event, Started):
            return [
                StartTimer("node_ring", self.ring_timeout),
                CallAgent(self.agent_id, self.queue, call.caller_leg),
            ]
        if isinstance(event, TimerFired) and event.name == "node_ring":
            return [Hangup(status=480, disposition="no_answer")]
        if getattr(event, "leg_id", None) != call.caller_leg:
            return []
        if isinstance(event, LegAnswered):
            self.answered = True
            return [CancelTimer("node_ring"), *self.then.handle(call, Started(), now)]
        if isinstance(event, LegFailed):
            status = event.status if 400 <= event.status < 700 else 480
            return [Hangup(status=status, disposition="no_answer")]
        return []
