"""Media handling behind the B2BUA: the per-leg `allocate / update / release` interface.

This package will hold the C-accelerated RTP engine (issue 4). Until then the only engine is
`PassThroughMedia`: it does not anchor RTP at all. SDP offers and answers travel between the
legs unchanged, so RTP flows directly between the carrier and the agent's phone, and the node
can neither record nor detect in-band DTMF. The B2BUA calls the interface at the same points
an anchoring engine needs (leg created, remote SDP known, leg gone), so swapping the engine in
does not change call control.
"""

from __future__ import annotations

from typing import Protocol


class MediaEngine(Protocol):
    """What call control needs from a media engine, one leg at a time."""

    def allocate(self, leg_id: str, remote_sdp: bytes | None) -> bytes | None:
        """A new leg: returns the SDP to offer/answer towards the other side."""

    def update(self, leg_id: str, remote_sdp: bytes) -> bytes:
        """New remote SDP on a leg (answer, re-INVITE, UPDATE): returns SDP for the other leg."""

    def release(self, leg_id: str) -> None:
        """The leg is gone: free its ports and state."""


class PassThroughMedia:
    """No anchoring: SDP is relayed unchanged and nothing is allocated."""

    def __init__(self) -> None:
        self.legs: set[str] = set()

    def allocate(self, leg_id: str, remote_sdp: bytes | None) -> bytes | None:
        self.legs.add(leg_id)
        return remote_sdp

    def update(self, leg_id: str, remote_sdp: bytes) -> bytes:
        return remote_sdp

    def release(self, leg_id: str) -> None:
        self.legs.discard(leg_id)


__all__ = ["MediaEngine", "PassThroughMedia"]
