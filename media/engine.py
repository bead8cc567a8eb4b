"""`RtpEngine`: the anchoring media engine, a thin Python layer over the C extension `_rtp`.

The C side (media/src/rtp_*.c) owns the RTP/RTCP sockets in one worker thread and does all
per-packet work without the GIL: relay between bridged legs with SSRC/sequence/timestamp
continuity, G.711 μ-law ⇄ A-law transcoding, RFC 4733 receive/send/relay, in-band DTMF
detection, playback, mixing, record taps, counters and RTP timeouts (SPEC MED-1..3). This
module keeps the legs, named by the B2BUA's `leg_id` strings (their family, partner, SDES
keys and SDP identity), turns the engine's events into the frozen `msgspec.Struct`s of
media/events.py delivered on the asyncio loop, loads prompt files once, and implements the
`MediaEngine` protocol (offer / answer / release) with the SDP reading and writing of
media/offer.py. The names of those two modules stay importable from here.

Protocol semantics (`media.MediaEngine`): `offer(from_leg, to_leg, sdp)` creates both legs
on first use (an RTP/RTCP port pair each), bridges them, applies `sdp` as `from_leg`'s remote
media (address, G.711 payload type, ptime, telephone-event, direction) and returns the same SDP
re-pointed at `to_leg`'s anchor. `answer(from_leg, to_leg, sdp)` applies the answer to
`from_leg` and returns it re-pointed at `to_leg`'s anchor; the codec the answer picked is
adopted by `to_leg` when its peer offered it (RFC 3264 §6.1), else `to_leg` keeps its own and
the engine transcodes μ-law ⇄ A-law.

Per-leg negotiation (the node as a party of the call: IVR, voicemail, hold music, and every
anchored leg): `answer_local(leg, offer)` answers a leg's offer with the node's own SDP,
`offer_local(leg)` makes the node's own offer and `apply_answer(leg, answer)` takes the reply.
Each leg keeps its own `o=` identity (RFC 4566 §5.2, version bumped on change, RFC 3264 §8);
nothing of one peer's SDP reaches another. Such legs are not bridged: `bridge(a, b)` joins
them when call control says so.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import wave
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from media import _rtp
from media._rtp import (
    MediaError,
    MediaStateError,
    MediaSystemError,
    MediaValueError,
    PortsExhaustedError,
    UnknownLegError,
)
from media.events import (
    DtmfDigit,
    DtmfSent,
    FirstPacket,
    LegStats,
    MediaEvent,
    PlaybackDone,
    RtpTimeout,
    TapBlock,
    TapData,
)
from media.items import DtmfTone, PlayItem, Prompt, Silence, Tone
from media.offer import (
    DIRECTION_FLOW,
    DIRECTIONS,
    FLOW_DIRECTION,
    TELEPHONE_EVENT_PT,
    Offer,
    Origin,
    RemoteMedia,
    anchor_sdp,
    audio_lines,
    read_media,
    read_sdp,
    remote_media_from_sdp,
)
from media.sdes import Crypto, LegKeys, SdesError
from softswitch.sdp import address_family

log = logging.getLogger("hotline.media")

SRTP_SUITES = {
    "AES_CM_128_HMAC_SHA1_80": _rtp.SRTP_AES_CM_128_HMAC_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": _rtp.SRTP_AES_CM_128_HMAC_SHA1_32,
    "AES_256_CM_HMAC_SHA1_80": _rtp.SRTP_AES_256_CM_HMAC_SHA1_80,
}
SRTP_SUITE_NAMES = {code: name for name, code in SRTP_SUITES.items()}
RECENT_LEGS = 4096  # released legs whose late events are still named
FAMILIES = {"IP4": 4, "IP6": 6}  # SDP addrtype (RFC 4566 §5.7) -> the engine's family


class _Leg:
    __slots__ = (
        "leg_id", "handle", "port", "family", "remote", "partner", "origin", "offered", "keys",
    )  # fmt: skip

    def __init__(self, leg_id: str, handle: int, port: int, family: str) -> None:
        self.leg_id = leg_id
        self.handle = handle
        self.port = port
        self.family = family  # "IP4" or "IP6" (SDP's addrtype): the family of its sockets
        self.remote: RemoteMedia | None = None
        self.partner: str | None = None
        # Our own SDP on this leg (answer_local / offer_local): its o= identity and the
        # lines last sent (media/offer.py), and our offer awaiting its answer (laws, direction).
        self.origin = Origin()
        self.offered: tuple[tuple[int, ...], str] | None = None
        self.keys = LegKeys()  # SDES: its setting and keys (media/sdes.py)


class RtpEngine:
    """Anchored media for the B2BUA (implements `media.MediaEngine`) and its direct API.

    All methods are called from the event loop's thread; they never block on packet work
    (the engine lock is held by the worker for one batch at most).

    Address families: each leg's sockets are IPv4 (bound to `local_ip`) or IPv6 (bound to
    `local_ip6`, when given), never both, and the node's SDP on a leg names the address of
    the leg's family. A leg takes the family of the first SDP it is given (an offer answered
    with `answer_local`, the SDP of `offer`) or the one asked for in `offer_local(family=)`,
    and moves to the other family when a later offer names an address of it (the sockets
    are re-bound, same port number when free). Two legs of different families bridge,
    mix and record like any others: IPv4 carrier ⇄ IPv6 agent.
    """

    anchors = True  # media.MediaEngine: the node terminates RTP and can answer a leg itself

    def __init__(
        self,
        local_ip: str,
        port_min: int,
        port_max: int,
        rtp_timeout: float = 30.0,
        *,
        max_legs: int = 4096,
        event_capacity: int = 8192,
        tap_capacity_ms: int = 10_000,
        tap_block_ms: int = 200,
        local_ip6: str | None = None,
    ) -> None:
        self.local_ip = local_ip
        self.local_ip6 = local_ip6 or None  # None: IPv4 legs only (IPv6 SDP is refused)
        self._rtp = _rtp.Engine(
            local_ip, port_min, port_max, rtp_timeout, max_legs, event_capacity, local_ip6 or ""
        )
        self._legs: dict[str, _Leg] = {}
        self._names: dict[int, str] = {}
        self._released: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._taps: dict[str, int] = {}
        self._tap_names: dict[int, str] = {}
        self._mixes: dict[str, int] = {}
        self._prompts: dict[tuple[str, int, int], int] = {}
        self._next_item = 1
        self._tap_capacity_ms = tap_capacity_ms
        self._tap_block_ms = tap_block_ms
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- MediaEngine protocol ---------------------------------------------------------------
    def offer(self, from_leg: str, to_leg: str, sdp: bytes | None) -> bytes | None:
        """An offer from `from_leg`'s peer, forwarded on `to_leg` (None: a delayed offer)."""
        source, target = self._ensure(from_leg), self._ensure(to_leg)
        if source.partner != to_leg:
            self.bridge(from_leg, to_leg)
        if sdp is None:
            return None
        media = remote_media_from_sdp(sdp)
        if media is not None:
            self._move(source, address_family(media.ip))
            self._apply(source, media)
        return anchor_sdp(sdp, self._address(target), target.port, offer_both_laws=True)

    def answer(self, from_leg: str, to_leg: str, sdp: bytes) -> bytes:
        """The answer from `from_leg`'s peer, forwarded to `to_leg` (which made the offer)."""
        if not sdp:
            return b""
        source, target = self._leg(from_leg), self._leg(to_leg)
        media = remote_media_from_sdp(sdp)
        codec: int | None = None
        if media is not None:
            self._same_family(source, media)
            self._apply(source, media)
            offered = target.remote
            if offered is not None:
                if media.payload_type in offered.payload_types:
                    if media.payload_type != offered.payload_type:
                        chosen = msgspec.structs.replace(offered, payload_type=media.payload_type)
                        self._apply(target, chosen)
                else:
                    # The answerer took the law only we added: the offerer keeps its own
                    # first choice and the engine transcodes between the legs.
                    codec = offered.payload_type
        return anchor_sdp(sdp, self._address(target), target.port, codec=codec)

    def release(self, leg_id: str) -> None:
        leg = self._legs.pop(leg_id, None)
        if leg is None:
            return
        if leg.partner and leg.partner in self._legs:
            self._legs[leg.partner].partner = None
        if leg.keys.secure:  # what SRTP did on the leg (never its keys)
            c = self._rtp.srtp_stats(leg.handle)
            log.info(
                "SRTP on leg %s: %d packets in, %d out; dropped %d failing authentication, "
                "%d replayed, %d other", leg_id, c["srtp_in"], c["srtp_out"],
                c["srtp_auth_failed"], c["srtp_replayed"], c["srtp_failed"],
            )  # fmt: skip
        self._rtp.destroy_leg(leg.handle)
        del self._names[leg.handle]
        self._released[leg.handle] = leg_id
        while len(self._released) > RECENT_LEGS:
            self._released.popitem(last=False)

    # --- the node's own offer/answer, per leg -----------------------------------------------
    def read_offer(self, offer: bytes) -> Offer:
        """`offer` parsed and checked, for `answer_local` later; raises `MediaValueError`
        when `answer_local` would (the leg can then be refused at once, 488)."""
        parsed = Offer(offer)
        if parsed.media is not None:
            self._check_family(address_family(parsed.media.ip))
        return parsed

    def answer_local(self, leg_id: str, offer: bytes | Offer, prefer: int | None = None) -> bytes:
        """Answer the offer that arrived on `leg_id` (INVITE, re-INVITE, UPDATE) with our SDP.

        Creates the leg if needed and applies the offer: its address, the first G.711 law it
        lists (`prefer`, 0 or 8, when the offer has it; else on a re-offer the law in use, so
        a session refresh does not switch codec), ptime, telephone-event and direction. The
        answer names only our address and port, that law, the offerer's telephone-event
        payload type and the mirrored direction (RFC 3264 §6.1).

        An offer without an audio stream, or whose audio port is 0, is answered (RFC 3264 §6
        requires an answer with the same m= lines) with every stream rejected (port 0) and the
        leg stops sending; `remote_media(leg_id)` is then None, so call control can decide
        whether a call without audio is worth keeping. Other m= lines (video …) are always
        rejected. Raises `MediaValueError` for an audio stream that is not RTP/AVP, lacks an
        address or G.711; the leg is then left as it was (RFC 3261 §14.2: a refused re-offer
        keeps the old session). `offer` may be the SDP or what `read_offer` made of it.
        """
        if prefer not in (None, 0, 8):
            raise MediaValueError(f"prefer must be 0 (PCMU) or 8 (PCMA), got {prefer!r}")
        parsed = offer if isinstance(offer, Offer) else self.read_offer(offer)
        sdp, audio, media = parsed.sdp, parsed.audio, parsed.media
        family = None if media is None else address_family(media.ip)
        if family is not None:
            self._check_family(family)
        leg = self._ensure(leg_id, family)
        crypto: list[str] = []
        if media is None:
            self._disable(leg)
        else:
            assert audio is not None
            try:  # SDES (RFC 4568 §7.1.2): our key for the suite of its first usable line
                mine, theirs = leg.keys.answer(audio.proto, parsed.crypto)
            except SdesError as exc:
                raise MediaValueError(f"leg {leg_id!r}: {exc}") from exc
            if prefer is None and leg.remote is not None:
                prefer = leg.remote.payload_type
            if prefer in media.payload_types:
                media = msgspec.structs.replace(media, payload_type=prefer)
            self._move(leg, address_family(media.ip))  # an offer may change family (§8.3.1)
            self._key(leg, audio.proto, mine, theirs)
            self._apply(leg, media)
            crypto = [mine.attribute()] if mine is not None else []
        streams: list[str] = []
        for m in sdp.media:
            if m is audio and media is not None:
                sends, receives = DIRECTION_FLOW[media.direction]
                ptime = (media.ptime_ms + 5) // 10 * 10  # what the 10 ms clock generates
                te = media.telephone_event_pt
                mirrored = FLOW_DIRECTION[(receives, sends)]
                streams += audio_lines(
                    leg.port, (media.payload_type,), te, ptime, mirrored, m.proto, crypto
                )
            else:
                streams.append(f"m={m.media} 0 {m.proto} {' '.join(m.formats)}")
        return self._own_sdp(leg, streams)

    def offer_local(
        self,
        leg_id: str,
        direction: str = "sendrecv",
        prefer: int | None = None,
        encryption: str | None = None,
        *,
        family: str | None = None,
    ) -> bytes:
        """Our own offer on `leg_id` (INVITE to an agent, or a re-INVITE we send: hold is
        `direction="sendonly"`/`"inactive"`); answer it with `apply_answer`.

        Offers PCMU and PCMA (`prefer` first; by default the law in use on a re-offer, else
        PCMU), telephone-event/8000 on PT 101, ptime 20. The leg is created if needed and
        keeps its port; the o= version moves on when the SDP differs from the last we sent
        on this leg and stays when it is the same (RFC 3264 §8: a session refresh).

        `encryption` ("none", "optional", "srtp"; None keeps the leg's, "none" at first)
        sets whether the offer asks for SRTP with SDES keys (media/sdes.py); a leg already
        in SRTP re-offers its key in use.
        `family` ("IP4"/"IP6", e.g. `address_family` of the host the party is reached at)
        is the address family the offer names: a new leg is created in it, an existing one
        moves to it; IPv4 when the engine has no IPv6 address. None: the leg's own (a new
        leg: IPv4). Both apply together: an IPv6 leg may be an SRTP one.
        """
        if direction not in DIRECTIONS:
            raise MediaValueError(f"direction {direction!r}")
        if prefer not in (None, 0, 8):
            raise MediaValueError(f"prefer must be 0 (PCMU) or 8 (PCMA), got {prefer!r}")
        if family is not None and family not in ("IP4", "IP6"):
            raise MediaValueError(f"family must be 'IP4' or 'IP6', got {family!r}")
        if family == "IP6" and self.local_ip6 is None:
            family = "IP4"  # the party may be dual-stack; an IPv6-only one answers 488
        leg = self._ensure(leg_id, family)
        if encryption is not None:
            try:
                leg.keys.set_encryption(encryption)
            except SdesError as exc:
                raise MediaValueError(str(exc)) from exc
        if family is not None:
            self._move(leg, family)
        if prefer is None:
            prefer = leg.remote.payload_type if leg.remote is not None else 0
        laws = (prefer, 8 - prefer)
        proto, crypto = leg.keys.offer()
        streams = audio_lines(leg.port, laws, TELEPHONE_EVENT_PT, 20, direction, proto, crypto)
        leg.offered = (laws, direction)
        return self._own_sdp(leg, streams)

    def apply_answer(self, leg_id: str, answer: bytes) -> int:
        """Apply the answer to our last `offer_local` on `leg_id`; returns the G.711 payload
        type now in use (0 or 8).

        The first G.711 law of the answer that we offered is used; telephone-event is sent
        with the answer's payload type (RFC 4733 §7.1.1 via RFC 3264 §6.1: the receiver's
        SDP names the types it receives). The effective direction is the answer's, limited
        to what our offer allowed. Raises `MediaStateError` when no offer is outstanding and
        `MediaValueError` when the answer cannot be used (not SDP, no G.711 law we offered,
        not RTP/AVP); then the leg keeps its previous media. An answer rejecting the audio
        stream (port 0, or none) also raises `MediaValueError`, after the leg has stopped
        sending (RFC 3264 §8.2: a disabled stream carries no media).
        """
        leg = self._leg(leg_id)
        if leg.offered is None:
            raise MediaStateError(f"leg {leg_id!r} has no offer of ours awaiting an answer")
        laws, direction = leg.offered
        sdp = read_sdp(answer)
        audio = next((m for m in sdp.media if m.media == "audio"), None)
        if audio is None or audio.port == 0:
            leg.offered = None
            self._disable(leg)
            raise MediaValueError(f"the answer on leg {leg_id!r} rejected the audio stream")
        media = read_media(sdp, audio)
        self._same_family(leg, media)
        chosen = next((pt for pt in media.payload_types if pt in laws), None)
        if chosen is None:
            raise MediaValueError(
                f"the answer on leg {leg_id!r} chose a codec we did not offer ({audio.formats})"
            )
        try:  # SDES: the answer's line with the tag of one of ours (RFC 4568 §7.1.3)
            mine, theirs = leg.keys.take_answer(audio.proto, audio.attributes("crypto"))
        except SdesError as exc:
            raise MediaValueError(f"the answer on leg {leg_id!r}: {exc}") from exc
        self._key(leg, audio.proto, mine, theirs)
        remote_sends, remote_receives = DIRECTION_FLOW[media.direction]
        we_send, we_receive = DIRECTION_FLOW[direction]
        effective = FLOW_DIRECTION[(remote_sends and we_receive, remote_receives and we_send)]
        self._apply(leg, msgspec.structs.replace(media, payload_type=chosen, direction=effective))
        leg.offered = None
        return chosen

    def remote_media(self, leg_id: str) -> RemoteMedia | None:
        """The far end's media as negotiated on the leg (None: no audio agreed yet)."""
        return self._leg(leg_id).remote

    # --- legs -------------------------------------------------------------------------------
    def create_leg(self, leg_id: str, family: str = "IP4") -> tuple[str, int]:
        """A new leg with its RTP port (RTCP on port + 1) in `family` ("IP4", or "IP6" with
        `local_ip6`); returns (local ip, RTP port)."""
        if leg_id in self._legs:
            raise MediaStateError(f"leg {leg_id!r} exists")
        self._check_family(family)
        handle, port = self._rtp.create_leg(FAMILIES[family])
        leg = _Leg(leg_id, handle, port, family)
        self._legs[leg_id] = leg
        self._names[handle] = leg_id
        return self._address(leg), port

    def set_remote(
        self,
        leg_id: str,
        ip: str,
        port: int,
        payload_type: int,
        ptime_ms: int = 20,
        telephone_event_pt: int | None = None,
    ) -> None:
        """Where the leg's RTP goes and in which codec (0 PCMU or 8 PCMA), from its SDP. An
        address of the other family moves the leg's sockets to it (`local_address` then
        says where the party must send)."""
        media = RemoteMedia(
            ip, port, payload_type, ptime_ms, telephone_event_pt, "sendrecv", (payload_type,)
        )
        leg = self._leg(leg_id)
        self._move(leg, address_family(ip))
        if leg.remote is not None:
            media = msgspec.structs.replace(media, direction=leg.remote.direction)
        self._apply(leg, media)

    def set_direction(self, leg_id: str, direction: str) -> None:
        """The direction in the leg's remote SDP: hold (sendonly/inactive) stops the timeout."""
        if direction not in DIRECTIONS:
            raise MediaValueError(f"direction {direction!r}")
        leg = self._leg(leg_id)
        self._rtp.set_direction(leg.handle, DIRECTIONS[direction])
        if leg.remote is not None:
            leg.remote = msgspec.structs.replace(leg.remote, direction=direction)

    def bridge(self, leg_a: str, leg_b: str) -> None:
        """Relay a ⇄ b (transcoding when their laws differ)."""
        a, b = self._leg(leg_a), self._leg(leg_b)
        self._rtp.bridge(a.handle, b.handle)
        for leg in (a, b):
            if leg.partner and leg.partner in self._legs:
                self._legs[leg.partner].partner = None
        a.partner, b.partner = leg_b, leg_a

    def unbridge(self, leg_id: str) -> None:
        leg = self._leg(leg_id)
        self._rtp.unbridge(leg.handle)
        if leg.partner and leg.partner in self._legs:
            self._legs[leg.partner].partner = None
        leg.partner = None

    def enable_inband_dtmf(self, leg_id: str, on: bool = True) -> None:
        self._rtp.set_inband_dtmf(self._leg(leg_id).handle, on)

    def send_dtmf(self, leg_id: str, digits: str, ms: int = 100, volume: int = 10) -> None:
        """Queue RFC 4733 events (volume in -dBm0, 0..63); needs telephone-event on the leg."""
        self._rtp.send_dtmf(self._leg(leg_id).handle, digits, ms, volume)

    # --- playback ---------------------------------------------------------------------------
    def play(self, leg_id: str, items: Sequence[PlayItem], barge_in: bool = False) -> list[int]:
        """Queue items after whatever plays; returns their ids (as in `PlaybackDone`)."""
        leg = self._leg(leg_id)
        ids: list[int] = []
        tuples: list[tuple] = []
        for item in items:
            item_id = self._next_item
            self._next_item += 1
            ids.append(item_id)
            tuples.append(self._item_tuple(item_id, item))
        self._rtp.play(leg.handle, tuples, barge_in)
        return ids

    def stop_play(self, leg_id: str) -> None:
        """Stop and clear the leg's playback queue (each item reports `stopped=True`)."""
        self._rtp.stop_play(self._leg(leg_id).handle)

    def load_prompt(self, path: str | os.PathLike[str]) -> int:
        """Load a prompt once (cached by path, size and mtime); returns its media id."""
        p = Path(path)
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        media_id = self._prompts.get(key)
        if media_id is None:
            media_id = self._rtp.add_media(_read_pcm(p))
            self._prompts[key] = media_id
        return media_id

    def _item_tuple(self, item_id: int, item: PlayItem) -> tuple:
        if isinstance(item, Prompt):
            return ("media", item_id, self.load_prompt(item.path))
        if isinstance(item, Tone):
            return (
                "tone", item_id, float(item.f1), float(item.f2), float(item.level_dbm0),
                item.on_ms, item.off_ms, item.repeats,
            )  # fmt: skip
        if isinstance(item, Silence):
            return ("silence", item_id, item.ms)
        if isinstance(item, DtmfTone):
            return ("dtmf", item_id, item.digit, float(item.level_dbm0), item.ms)
        raise MediaValueError(f"not a playback item: {item!r}")

    # --- mixing -----------------------------------------------------------------------------
    def mix(self, mix_id: str, hears: Mapping[str, Iterable[str]]) -> None:
        """Create or reconfigure a mix: each leg hears the legs listed for it.

        Three-way: everyone hears the other two. Silent monitor: caller hears agent, agent
        hears caller, supervisor hears both, nobody hears the supervisor. Whisper: as monitor,
        plus the agent hears the supervisor. Legs in a mix leave their bridge.
        """
        names = list(hears)
        index = {name: i for i, name in enumerate(names)}
        masks = []
        for name in names:
            mask = 0
            for heard in hears[name]:
                if heard not in index:
                    raise UnknownLegError(f"{heard!r} is not a member of mix {mix_id!r}")
                mask |= 1 << index[heard]
            masks.append(mask)
        handles = [self._leg(name).handle for name in names]
        current = self._mixes.get(mix_id, 0)
        self._mixes[mix_id] = self._rtp.mix_set(current, handles, masks)
        for name in names:
            leg = self._legs[name]
            if leg.partner and leg.partner in self._legs:
                self._legs[leg.partner].partner = None
            leg.partner = None

    def unmix(self, mix_id: str) -> None:
        self._rtp.mix_remove(self._mixes.pop(mix_id))

    # --- record taps ------------------------------------------------------------------------
    def tap_start(
        self, call_id: str, leg_a: str, leg_b: str | None, *, heard: bool = False
    ) -> None:
        """Record what the parties say: leg a's received audio → channel 0, b's → channel 1.

        `leg_b=None` records leg a alone (voicemail): channel 1 is silence, or, with
        `heard=True` (the call recording), every audio packet the node sends to leg a —
        the bridged party, prompts, music, a conference mix — as the party heard it. Neither
        leg needs a bridge. A leg feeds up to four taps at once (`MediaStateError` beyond).
        `call_id` names the tap in `TapData` and `tap_read`.
        """
        if call_id in self._taps:
            raise MediaStateError(f"call {call_id!r} is already tapped")
        if heard and leg_b is not None:
            raise MediaValueError("a heard tap records one leg: leg_b must be None")
        if leg_b is not None:
            b = self._leg(leg_b).handle
        else:
            b = _rtp.TAP_HEARD if heard else _rtp.TAP_ONE_LEG
        tap = self._rtp.tap_start(
            self._leg(leg_a).handle, b, self._tap_capacity_ms, self._tap_block_ms
        )
        self._taps[call_id] = tap
        self._tap_names[tap] = call_id

    def tap_read(self, call_id: str) -> TapBlock:
        """Everything the tap's ring holds now (possibly nothing)."""
        tap = self._taps.get(call_id)
        if tap is None:
            raise UnknownLegError(f"call {call_id!r} has no tap")
        pcm, overflow = self._rtp.tap_read(tap)
        return TapBlock(call_id, pcm, len(pcm) // 4, overflow)

    def tap_stop(self, call_id: str) -> None:
        tap = self._taps.pop(call_id, None)
        if tap is None:
            raise UnknownLegError(f"call {call_id!r} has no tap")
        self._rtp.tap_stop(tap)
        del self._tap_names[tap]

    # --- counters and events ----------------------------------------------------------------
    def stats(self, leg_id: str) -> LegStats:
        handle = self._leg(leg_id).handle
        counters = self._rtp.stats(handle)
        counters.update(self._rtp.srtp_stats(handle))
        for name in ("srtp_in_suite", "srtp_out_suite"):
            counters[name] = SRTP_SUITE_NAMES.get(counters[name])  # type: ignore[call-overload]
        return msgspec.convert(counters, LegStats)

    def set_srtp(self, leg_id: str, inbound: Crypto | None, outbound: Crypto | None) -> None:
        """Key the leg's SRTP/SRTCP directly: `inbound` unprotects what its party sends,
        `outbound` protects what the node sends it; None is plain RTP that way. The same
        suite and key again keep the running context (replay window, rollover counter)."""
        self._set_srtp(self._leg(leg_id), inbound, outbound)

    def info(self) -> dict[str, int]:
        return self._rtp.info()

    def events(self) -> list[MediaEvent]:
        """Drain the engine's event queue (up to 1024 per call)."""
        out: list[MediaEvent] = []
        for kind, handle, digit, flag, value, item, ip, port in self._rtp.events():
            if kind == _rtp.EV_TAP_DATA:
                call_id = self._tap_names.get(handle)
                if call_id is not None:
                    out.append(TapData(call_id, value))
                continue
            leg_id = self._names.get(handle) or self._released.get(handle)
            if leg_id is None:
                continue  # a leg released long ago; nobody is left to tell
            if kind == _rtp.EV_FIRST_PACKET:
                out.append(FirstPacket(leg_id, ip, port, bool(flag)))
            elif kind == _rtp.EV_TIMEOUT:
                out.append(RtpTimeout(leg_id, value))
            elif kind == _rtp.EV_DTMF:
                source = "inband" if flag == _rtp.DTMF_INBAND else "rfc4733"
                out.append(DtmfDigit(leg_id, digit or "?", value, source))
            elif kind == _rtp.EV_DTMF_SENT:
                out.append(DtmfSent(leg_id, digit or "?", value))
            elif kind == _rtp.EV_PLAY_DONE:
                out.append(PlaybackDone(leg_id, item, bool(flag)))
        return out

    def fileno(self) -> int:
        """The eventfd that becomes readable when events are waiting."""
        return self._rtp.fileno()

    def attach(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[[MediaEvent], None]
    ) -> None:
        """Deliver every event to `callback` on `loop` (via loop.add_reader on the eventfd)."""
        if self._loop is not None:
            raise MediaStateError("already attached to an event loop")

        def readable() -> None:
            for event in self.events():
                callback(event)

        loop.add_reader(self.fileno(), readable)
        self._loop = loop

    def detach(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.fileno())
            self._loop = None

    def close(self) -> None:
        """Stop the worker thread and free every port."""
        self.detach()
        self._rtp.close()
        self._legs.clear()
        self._names.clear()

    # --- helpers ----------------------------------------------------------------------------
    def local_address(self, leg_id: str) -> tuple[str, int]:
        """(local ip, RTP port) of the leg now: where its party sends RTP."""
        leg = self._leg(leg_id)
        return self._address(leg), leg.port

    def _ensure(self, leg_id: str, family: str | None = None) -> _Leg:
        if leg_id not in self._legs:
            self.create_leg(leg_id, family or "IP4")
        return self._legs[leg_id]

    def _address(self, leg: _Leg) -> str:
        """The node's address in the leg's family (its SDP's c= and o=)."""
        return self.local_ip6 if leg.family == "IP6" and self.local_ip6 else self.local_ip

    def _check_family(self, family: str) -> None:
        if family == "IP6" and self.local_ip6 is None:
            raise MediaValueError(
                "IPv6 media (c=IN IP6) but the node has no IPv6 media address (media.rtp_ip6)"
            )

    def _move(self, leg: _Leg, family: str) -> None:
        """The leg's sockets in `family` (re-bound when it had the other one)."""
        if family == leg.family:
            return
        self._check_family(family)
        leg.port = self._rtp.set_family(leg.handle, FAMILIES[family])
        leg.family = family
        leg.remote = None

    def _same_family(self, leg: _Leg, media: RemoteMedia) -> None:
        """An answer must name an address of the family we offered: the party sends to
        the address of our offer, and our sockets are of its family."""
        family = address_family(media.ip)
        if family != leg.family:
            raise MediaValueError(
                f"the answer on leg {leg.leg_id!r} names an {family} address ({media.ip}); "
                f"our offer named {leg.family} {self._address(leg)}"
            )

    def _leg(self, leg_id: str) -> _Leg:
        leg = self._legs.get(leg_id)
        if leg is None:
            raise UnknownLegError(f"unknown leg {leg_id!r}")
        return leg

    def _disable(self, leg: _Leg) -> None:
        """The leg's audio stream is rejected or disabled: send nothing, expect nothing."""
        self._rtp.set_direction(leg.handle, _rtp.INACTIVE)
        leg.remote = None

    def _own_sdp(self, leg: _Leg, streams: list[str]) -> bytes:
        """A whole SDP body of ours for `leg`, with the leg's o= identity."""
        return leg.origin.sdp(leg.family, self._address(leg), streams)

    def _key(self, leg: _Leg, proto: str, mine: Crypto | None, theirs: Crypto | None) -> None:
        """Key the leg as negotiated and remember it (a refused key changes nothing)."""
        self._set_srtp(leg, theirs, mine)
        leg.keys.use(proto, mine, theirs)

    def _set_srtp(self, leg: _Leg, inbound: Crypto | None, outbound: Crypto | None) -> None:
        def suite(c: Crypto | None) -> tuple[int, bytes]:
            return (_rtp.SRTP_NONE, b"") if c is None else (SRTP_SUITES[c.suite], c.key)

        self._rtp.set_srtp(leg.handle, *suite(inbound), *suite(outbound))

    def _apply(self, leg: _Leg, media: RemoteMedia) -> None:
        te = -1 if media.telephone_event_pt is None else media.telephone_event_pt
        self._rtp.set_remote(
            leg.handle, media.ip, media.port, media.payload_type, media.ptime_ms, te
        )
        self._rtp.set_direction(leg.handle, DIRECTIONS[media.direction])
        # A peer without telephone-event (a trunk without RFC 4733) sends its keys in-band:
        # listen for them in the audio (MED-1).
        self._rtp.set_inband_dtmf(leg.handle, media.telephone_event_pt is None)
        leg.remote = media


def _read_pcm(path: Path) -> bytes:
    """8 kHz mono 16-bit samples (native byte order) from a WAV file or raw LE PCM."""
    with path.open("rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        try:
            with wave.open(str(path), "rb") as w:
                if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
                    raise MediaValueError(
                        f"{path}: need 8 kHz mono 16-bit PCM, got {w.getframerate()} Hz, "
                        f"{w.getnchannels()} channel(s), {8 * w.getsampwidth()} bit"
                    )
                data = w.readframes(w.getnframes())
        except wave.Error as exc:
            raise MediaValueError(f"{path}: {exc}") from exc
    else:
        data = path.read_bytes()
        if len(data) % 2:
            raise MediaValueError(f"{path}: raw PCM with an odd byte count")
    if sys.byteorder == "big":
        import array

        samples = array.array("h", data)
        samples.byteswap()
        data = samples.tobytes()
    return data


__all__ = [
    "DtmfDigit",
    "DtmfSent",
    "DtmfTone",
    "FirstPacket",
    "MediaValueError",
    "LegStats",
    "MediaError",
    "MediaEvent",
    "MediaStateError",
    "MediaSystemError",
    "Offer",
    "PlayItem",
    "PlaybackDone",
    "PortsExhaustedError",
    "Prompt",
    "RemoteMedia",
    "RtpEngine",
    "RtpTimeout",
    "Silence",
    "TapBlock",
    "TapData",
    "Tone",
    "UnknownLegError",
    "address_family",
    "anchor_sdp",
    "remote_media_from_sdp",
]
