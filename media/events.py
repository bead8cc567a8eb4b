"""What `RtpEngine` (media/engine.py) reports: its events, tap blocks and per-leg counters.

The C engine queues events from its worker thread; `RtpEngine.events` turns each into one of
these frozen `msgspec.Struct`s, named by the B2BUA's `leg_id` (or the tap's `call_id`), and
`RtpEngine.attach` delivers them on the asyncio loop. `TapBlock` is what `tap_read` returns,
`LegStats` what `stats` returns.
"""

from __future__ import annotations

import msgspec


class FirstPacket(msgspec.Struct, frozen=True):
    """The leg latched on a source (symmetric RTP): first packet, or a new source."""

    leg_id: str
    ip: str
    port: int
    relatched: bool


class RtpTimeout(msgspec.Struct, frozen=True):
    """Neither RTP nor RTCP for `rtp_timeout` s while the leg was sendrecv (SPEC MED-3)."""

    leg_id: str
    silent_ms: int


class DtmfDigit(msgspec.Struct, frozen=True):
    leg_id: str
    digit: str
    duration_ms: int
    source: str  # "rfc4733" or "inband"


class DtmfSent(msgspec.Struct, frozen=True):
    leg_id: str
    digit: str
    duration_ms: int


class PlaybackDone(msgspec.Struct, frozen=True):
    leg_id: str
    item_id: int
    stopped: bool  # True: stop_play, barge-in or release; False: played to the end


class TapData(msgspec.Struct, frozen=True):
    """A record tap has at least one block waiting: call `tap_read(call_id)`."""

    call_id: str
    frames_ready: int


MediaEvent = FirstPacket | RtpTimeout | DtmfDigit | DtmfSent | PlaybackDone | TapData


class TapBlock(msgspec.Struct, frozen=True):
    """Interleaved native-endian int16 stereo at 8 kHz: channel 0 = leg a, 1 = leg b
    (silence for a tap of one leg)."""

    call_id: str
    pcm: bytes
    frames: int
    overflow: int  # frames dropped so far because the ring was full


class LegStats(msgspec.Struct, frozen=True):
    port: int
    family: int  # 4 or 6: the family of the leg's sockets
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    lost: int
    jitter_ms: float
    dropped: int
    rtcp_in: int
    rtcp_out: int
    ssrc_in: int
    ssrc_out: int
    seq_out: int
    ts_out: int
    latched: tuple[str, int] | None
    dtmf_pending: int
    playing: bool
    # SRTP (RFC 3711): the suite of each direction (None: plain RTP), packets unprotected
    # and protected, and those dropped for a wrong tag, a replay or another failure
    srtp_in_suite: str | None = None
    srtp_out_suite: str | None = None
    srtp_in: int = 0
    srtp_out: int = 0
    srtp_auth_failed: int = 0
    srtp_replayed: int = 0
    srtp_failed: int = 0


__all__ = [
    "DtmfDigit",
    "DtmfSent",
    "FirstPacket",
    "LegStats",
    "MediaEvent",
    "PlaybackDone",
    "RtpTimeout",
    "TapBlock",
    "TapData",
]
