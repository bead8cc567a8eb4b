"""Applications: the objects in control of a call (STYLE §1: events in, actions out).

An application sees one session through a `CallView` and is told what happens to it
(`softswitch.call.events.AppEvent`, with `now`); it answers with a list of actions
(`softswitch.call.actions`). It does no I/O and keeps no clock: the IVR interpreter, the queue
application and (later) the survey, voicemail and campaign applications are all of this
shape, and all are tested by feeding events with virtual time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from softswitch.call.actions import Action
    from softswitch.call.events import AppEvent
    from softswitch.config import Config


class CallView(Protocol):
    """What an application may read of its session."""

    @property
    def call_id(self) -> str: ...
    @property
    def caller(self) -> str: ...
    @property
    def called(self) -> str: ...
    @property
    def trunk(self) -> str: ...
    @property
    def caller_leg(self) -> str:
        """The leg id of the inbound (caller's) leg."""

    @property
    def caller_answered(self) -> bool:
        """Whether the caller's leg is answered (by the node or through a bridge)."""

    @property
    def variables(self) -> dict[str, str]:
        """The call's associated data (read it; change it with `SetVariable`)."""

    @property
    def config(self) -> Config:
        """The configuration the call started with (STYLE §4)."""

    @property
    def agent_id(self) -> str | None:
        """The last agent who talked to the caller, if any."""

    def new_leg_id(self) -> str:
        """A fresh id for a leg the application is about to ask for (`CallAgent`)."""
        ...


class Application(Protocol):
    #: For logs and events: "ivr", "queue", "dialout" …
    name: str

    def handle(self, call: CallView, event: AppEvent, now: float) -> list[Action]:
        """React to one event; `Started` comes first."""
        ...
