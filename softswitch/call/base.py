"""The state call control shares between its parts (`softswitch/call/control.py` holds the
core, `signalling.py` the SIP side, `leg_actions.py` what applications do to legs): the
attributes `CallControl.__init__` sets, and the methods one part calls in another."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from softswitch.call.sipcodec import sips_dialog

if TYPE_CHECKING:
    from acd import Acd
    from media import MediaEngine, PassThroughMedia
    from softswitch.call.bus import EventBus
    from softswitch.call.leg import Leg
    from softswitch.call.session import Session
    from softswitch.sip.location import LocationService
    from softswitch.sip.transaction import TransactionLayer


#: Names of call control's own per-session timers (recording limits, the caller's provisional
#: refresh) start with this.
TIMER_PREFIX = "\x00"


class ControlBase:
    txn: TransactionLayer
    acd: Acd
    location: LocationService
    bus: EventBus
    media: MediaEngine
    passthrough: PassThroughMedia
    direct_media: Callable[[str, str], bool]
    contact_for: Callable[..., str]  # (target, sips=True): switch.py
    realm: str
    wall_offset: float
    sessions: dict[str, Session]
    counters: dict[str, int]
    sink_factory: Callable[[str], Any] | None
    send_now: Callable[[], None] | None  # the node's commit-then-send (node.py); None: tests
    speech_factory: Callable[[str, tuple[str, ...]], Any] | None
    _by_invite: dict[tuple, Session]
    _by_origin: dict[tuple, Session]
    _clients: dict[tuple, tuple]
    _timer_c: dict[str, tuple]
    _dialogs: dict[tuple, tuple[Session, Leg]]
    _recordings: dict[str, tuple[Session, Leg]]
    _listening: dict[str, tuple[Session, Leg, Any]]
    _pending: deque[Any]
    port: Any  # control.py's _AcdPort
    _graveyard: deque[tuple[float, list[tuple], list[tuple]]]
    cleanup_delay: float
    _adopted: dict[str, Session]  # leg id -> the call a picked-up leg moved to

    def _contact(self, leg: Leg) -> str:
        """The node's Contact header value in `leg`'s dialog, `<…>`: on TLS `sips:` only in
        a SIPS dialog (sipcodec.sips_dialog)."""
        return f"<{self.contact_for(leg.target, sips_dialog(leg.invite))}>"

    # Implemented by the parts (each names where); declared here so that one part may call
    # another's.
    @property
    def anchors(self) -> bool:  # control.py
        raise NotImplementedError

    def wall(self, now: float) -> float:  # control.py
        raise NotImplementedError

    def _deliver(self, session: Session, event: Any, now: float) -> None:  # control.py
        raise NotImplementedError

    def _drain(self) -> None:  # control.py
        raise NotImplementedError

    def _start_timer(self, session: Session, name: str, seconds: float, now: float) -> None:
        raise NotImplementedError  # control.py

    def acd_input(self, now: float, method: Callable[..., list[Any]], *args: Any) -> None:
        raise NotImplementedError  # control.py

    def apply(self, commands: Any, now: float) -> None:
        raise NotImplementedError  # control.py

    def acd_command(self, now: float, method: Callable[..., list[Any]], *args: Any) -> None:
        raise NotImplementedError  # control.py

    def on_dtmf(self, session: Session, leg_id: str, digit: str, source: str, now: float) -> None:
        raise NotImplementedError  # control.py

    def _release(self, session: Session, now: float, disposition: str, side: str,
                 cause: int | None, leg_reason: str = "call_ended",
                 tell_app: bool = True, phrase: str = "") -> None:  # fmt: skip
        raise NotImplementedError  # control.py

    def _leg_stopped(self, session: Session, leg: Leg, now: float,
                     disposition: str | None = None, cause: int | None = None) -> None:  # fmt: skip
        raise NotImplementedError  # control.py

    def _respond(self, key: tuple | None, response: Any, now: float) -> None:
        raise NotImplementedError  # signalling.py

    def _a_response(self, session: Session, status: int, reason: str = "",
                    body: bytes = b"", extra: list[tuple[str, str]] | None = None,
                    ) -> Any:  # fmt: skip
        raise NotImplementedError  # signalling.py

    def _timer_start(self, session: Session, leg: Leg, now: float) -> None:
        raise NotImplementedError  # extensions.py

    def _final_to_caller(self, session: Session, response: Any, now: float) -> None:
        raise NotImplementedError  # extensions.py

    def _send_reliable(self, session: Session, leg: Leg, now: float) -> None:
        raise NotImplementedError  # extensions.py

    def _prack_timer(self, session: Session, leg: Leg, now: float) -> None:
        raise NotImplementedError  # extensions.py

    def _session_timer(self, session: Session, leg: Leg, now: float) -> None:
        raise NotImplementedError  # extensions.py

    def _caller_refresh(self, session: Session, leg: Leg, event: Any, now: float) -> bool:
        raise NotImplementedError  # extensions.py

    def _uac_timer(self, session: Session, leg: Leg, response: Any, now: float) -> None:
        raise NotImplementedError  # extensions.py

    def _retry_422(self, session: Session, leg: Leg, response: Any, now: float) -> bool:
        raise NotImplementedError  # extensions.py

    def _invite_again(
        self, session: Session, leg: Leg, invite: Any, target: Any, now: float
    ) -> None:
        raise NotImplementedError  # failover.py

    def _prack_provisional(self, session: Session, leg: Leg, response: Any, now: float) -> bool:
        raise NotImplementedError  # extensions.py

    def _on_prack(self, session: Session, leg: Leg, event: Any, now: float) -> None:
        raise NotImplementedError  # extensions.py

    def _refresh_answered(self, session: Session, leg: Leg, event: Any, now: float) -> None:
        raise NotImplementedError  # extensions.py

    def _end_early_media(self, session: Session, now: float) -> None:
        raise NotImplementedError  # leg_actions.py

    def _timer_c_fired(self, session: Session, name: str, now: float) -> None:
        raise NotImplementedError  # signalling.py

    def _invite_response(self, session: Session, leg: Leg, event: Any, now: float) -> None:
        raise NotImplementedError  # signalling.py

    def _fork(self, session: Session, leg: Leg, targets: list[Any], now: float) -> None:
        raise NotImplementedError  # forking.py

    def _fork_response(self, session: Session, leg: Leg, fork: Any, event: Any,
                       now: float) -> None:  # fmt: skip
        raise NotImplementedError  # forking.py

    def _fork_timeout(self, leg: Leg, fork: Any) -> None:
        raise NotImplementedError  # forking.py

    def _next_attempt(self, session: Session, leg: Leg, status: int) -> bool:
        raise NotImplementedError  # forking.py

    def _cancel_forks(self, leg: Leg, now: float) -> None:
        raise NotImplementedError  # forking.py

    def _leg_refusal(self, leg: Leg, status: int) -> int:
        raise NotImplementedError  # forking.py

    def _outbound_routes(self, session: Session, trunk: Any) -> list[tuple[Any, str]]:
        raise NotImplementedError  # failover.py

    def _start_attempt_timer(self, session: Session, leg: Leg, now: float) -> None:
        raise NotImplementedError  # failover.py

    def _failover_timer(self, session: Session, leg: Leg, now: float) -> None:
        raise NotImplementedError  # failover.py

    def _redial(self, session: Session, leg: Leg, why: str, now: float) -> bool:
        raise NotImplementedError  # failover.py

    def _stale_response(self, session: Session, leg: Leg, key: tuple, response: Any,
                        extra: tuple, now: float) -> None:  # fmt: skip
        raise NotImplementedError  # failover.py

    def _unpeer(self, leg: Leg) -> None:
        raise NotImplementedError  # signalling.py

    def _bye(self, session: Session, leg: Leg, now: float, dialog: Any = None) -> None:
        raise NotImplementedError  # signalling.py

    def _cancel_leg(self, session: Session, leg: Leg, now: float, reason: str) -> None:
        raise NotImplementedError  # signalling.py

    def _end_relays(self, session: Session, now: float) -> None:
        raise NotImplementedError  # signalling.py

    @staticmethod
    def _hold_state(leg: Leg, body: bytes) -> None:
        raise NotImplementedError  # signalling.py

    def _refer(self, session: Session, leg: Leg, event: Any, now: float) -> None:
        raise NotImplementedError  # features.py

    def _agent_hold(self, session: Session, leg: Leg, event: Any, now: float) -> bool:
        raise NotImplementedError  # features.py

    def _transfer_done(self, session: Session, now: float) -> None:
        raise NotImplementedError  # features.py

    def _transfer_failed(self, session: Session, now: float) -> None:
        raise NotImplementedError  # features.py

    def _end_supervision(self, target: Session, now: float, hang_up: bool = True) -> None:
        raise NotImplementedError  # features.py

    def _stop_record(self, session: Session, leg: Leg, reason: str, now: float) -> None:
        raise NotImplementedError  # leg_actions.py

    def _stop_listen(self, tap_id: str) -> None:
        raise NotImplementedError  # leg_actions.py

    def _leave_mixes(self, session: Session, leg: Leg, now: float) -> None:
        raise NotImplementedError  # leg_actions.py

    def _unmix(self, session: Session, mix_id: str, now: float) -> None:
        raise NotImplementedError  # leg_actions.py

    def _tap_data(self, session: Session, leg: Leg, now: float) -> None:
        raise NotImplementedError  # leg_actions.py
