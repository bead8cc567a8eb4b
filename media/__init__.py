"""Media handling behind the B2BUA: SDP offers and answers crossing a call, leg by leg.

The B2BUA tells the engine about every SDP that crosses the call (RFC 3264 offer/answer):
an offer received on one leg and forwarded on another, and the answer coming back. The
engine returns the SDP to forward, which names its own address and ports when it anchors the
media (the C RTP engine of issue 4) or is the same SDP when it does not.

`PassThroughMedia` does not anchor RTP: SDP travels unchanged, RTP flows directly between the
carrier and the agent's phone, and the node can neither record nor detect in-band DTMF.

When the engine `anchors` media, each leg can also negotiate with the node itself
(`answer_local` / `offer_local` / `apply_answer`): the node is then a party of the call (IVR,
voicemail, hold music) and joins legs with a bridge. `PassThroughMedia` has the same methods,
so one type serves call control, but they raise `NotAnchoredError`: check `anchors` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

try:  # the engine's own exception base, raised by every engine call
    from media._rtp import MediaError
except ImportError:  # the C extension is not built: only PassThroughMedia is usable

    class MediaError(Exception):  # type: ignore[no-redef]
        """Base of media engine errors (stand-in while the extension is not built)."""


if TYPE_CHECKING:
    from media.engine import RtpEngine


class NotAnchoredError(MediaError):
    """The engine does not terminate RTP, so the node cannot be a party of the leg's media."""


class MediaEngine(Protocol):
    """What call control needs from a media engine."""

    @property
    def anchors(self) -> bool:
        """True when RTP passes through the node (it can answer, play and record a leg)."""

    def offer(self, from_leg: str, to_leg: str, sdp: bytes | None) -> bytes | None:
        """An offer (or no SDP: a delayed offer) arrived on `from_leg` and goes to `to_leg`;
        returns the SDP to send on `to_leg`. Raises `MediaError` (a `ValueError` subclass for
        SDP the engine cannot serve, e.g. no G.711)."""

    def answer(self, from_leg: str, to_leg: str, sdp: bytes) -> bytes:
        """The answer to our offer on `from_leg` arrived; returns the answer to send on
        `to_leg` (which made the original offer). Empty bytes when there is no SDP."""

    def release(self, leg_id: str) -> None:
        """The leg is gone: free its ports and state."""

    def read_offer(self, offer: bytes) -> Any:
        """`offer` parsed and checked for a later `answer_local` (which takes either);
        raises `MediaValueError` for SDP the engine cannot serve, `NotAnchoredError`
        without an anchor."""

    def answer_local(self, leg_id: str, offer: Any, prefer: int | None = None) -> bytes:
        """Answer the offer received on `leg_id` (its SDP, or what `read_offer` returned)
        with the node's own SDP (see `RtpEngine`). Raises `MediaValueError` for SDP it
        cannot serve, `NotAnchoredError` without an anchor."""

    def offer_local(
        self,
        leg_id: str,
        direction: str = "sendrecv",
        prefer: int | None = None,
        encryption: str | None = None,
        *,
        family: str | None = None,
    ) -> bytes:
        """The node's own offer for `leg_id` (INVITE, or re-INVITE such as hold);
        `encryption` ("none", "optional", "srtp", None: as before) asks for SRTP; `family`
        ("IP4"/"IP6"): the address family the party is reached over, None: the leg's own."""

    def apply_answer(self, leg_id: str, answer: bytes) -> int:
        """The answer to our `offer_local` on `leg_id` arrived; returns the G.711 payload
        type in use."""

    # The node as a party (anchoring engines only; `NotAnchoredError` otherwise).
    def bridge(self, leg_a: str, leg_b: str) -> None:
        """Relay a ⇄ b."""

    def unbridge(self, leg_id: str) -> None: ...

    def mix(self, mix_id: str, hears: Any) -> None:
        """Create or reconfigure a mix: each leg hears the legs listed for it."""

    def unmix(self, mix_id: str) -> None: ...

    def play(self, leg_id: str, items: Sequence[Any], barge_in: bool = False) -> list[int]:
        """Queue playback items; returns their ids (as in `PlaybackDone`)."""

    def stop_play(self, leg_id: str) -> None: ...

    def tap_start(
        self, call_id: str, leg_a: str, leg_b: str | None, *, heard: bool = False
    ) -> None:
        """Record what `leg_a`'s party (and `leg_b`'s, if given) says; `heard=True`:
        channel 1 is what the node sends to `leg_a` instead."""

    def tap_read(self, call_id: str) -> Any:
        """A `TapBlock` with everything the tap holds now."""

    def tap_stop(self, call_id: str) -> None: ...


class PassThroughMedia:
    """No anchoring: SDP is relayed unchanged and nothing is allocated.

    The per-leg negotiation methods exist so that `PassThroughMedia` is a `MediaEngine`, but
    always raise `NotAnchoredError`: without RTP through the node there is nothing to answer
    with.
    """

    anchors = False

    def offer(self, from_leg: str, to_leg: str, sdp: bytes | None) -> bytes | None:
        return sdp

    def answer(self, from_leg: str, to_leg: str, sdp: bytes) -> bytes:
        return sdp

    def release(self, leg_id: str) -> None:
        return None

    def read_offer(self, offer: bytes) -> Any:
        raise NotAnchoredError("media pass-through does not answer offers itself")

    def answer_local(self, leg_id: str, offer: Any, prefer: int | None = None) -> bytes:
        raise NotAnchoredError(f"leg {leg_id!r}: media pass-through cannot answer for the node")

    def offer_local(
        self,
        leg_id: str,
        direction: str = "sendrecv",
        prefer: int | None = None,
        encryption: str | None = None,
        *,
        family: str | None = None,
    ) -> bytes:
        raise NotAnchoredError(f"leg {leg_id!r}: media pass-through cannot offer for the node")

    def apply_answer(self, leg_id: str, answer: bytes) -> int:
        raise NotAnchoredError(f"leg {leg_id!r}: media pass-through made no offer")

    def bridge(self, leg_a: str, leg_b: str) -> None:
        raise NotAnchoredError("media pass-through: legs meet end to end, not in the node")

    def unbridge(self, leg_id: str) -> None:
        return None

    def mix(self, mix_id: str, hears: Any) -> None:
        raise NotAnchoredError("media pass-through cannot mix legs")

    def unmix(self, mix_id: str) -> None:
        return None

    def play(self, leg_id: str, items: Sequence[Any], barge_in: bool = False) -> list[int]:
        raise NotAnchoredError(f"leg {leg_id!r}: media pass-through cannot play")

    def stop_play(self, leg_id: str) -> None:
        return None

    def tap_start(
        self, call_id: str, leg_a: str, leg_b: str | None, *, heard: bool = False
    ) -> None:
        raise NotAnchoredError(f"leg {leg_a!r}: media pass-through cannot record")

    def tap_read(self, call_id: str) -> Any:
        raise NotAnchoredError("media pass-through records nothing")

    def tap_stop(self, call_id: str) -> None:
        return None


def __getattr__(name: str) -> object:
    # `from media import RtpEngine` imports the extension only when asked for.
    if name == "RtpEngine":
        from media.engine import RtpEngine

        return RtpEngine
    raise AttributeError(name)


__all__ = ["MediaEngine", "MediaError", "NotAnchoredError", "PassThroughMedia", "RtpEngine"]
