"""The two references of bench/ivr.py, each run as its own process (pinned like the node).

::

    python bench/ivr_ref.py engine --sip PORT --prompts DIR --rtp-ports MIN:MAX
    python bench/ivr_ref.py echo --rtp PORT

- ``engine``: the same C RTP engine as hotline (`media.engine.RtpEngine`) behind the smallest
  SIP UAS that answers an INVITE (200 with the engine's SDP, no transaction layer, no dialog
  state beyond the Call-ID), plays ``menu.wav`` with barge-in, and on an RFC 4733 digit plays
  ``key<D>.wav`` then the menu again — the bench flow of hotline without the switch, call
  control, IVR interpreter, event bus or CDR commit. What hotline adds over it is the cost of
  everything above the engine.
- ``echo``: a plain asyncio UDP server that answers every PCMU packet with one 20 ms frame of
  the menu tone and the first end packet of each RFC 4733 event with one frame of that key's
  tone. No engine, no clock: the floor of the load generator, the kernel and an asyncio loop.

Both exit on SIGTERM/SIGINT and bind 127.0.0.1 only. Not a SIP implementation: it trusts its
one client, the load generator of bench/ivr.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import struct
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    # Run as a script: the repository root first, and not bench/ itself, whose ivr.py would
    # otherwise shadow the `ivr` package.
    _bench = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _bench]
    sys.path.insert(0, str(_bench.parent))

LOOPBACK = "127.0.0.1"
FS = 8000
FRAME = 160
MENU_HZ = 400.0
TE_PT = 101


def key_hz(digit: int) -> float:
    """The tone of the prompt of key `digit` (1..9): 600 … 1400 Hz, bin-exact in 160 samples."""
    return 500.0 + 100.0 * digit


def tone_pcm(hz: float, samples: int, amplitude: float = 7000.0) -> np.ndarray:
    t = np.arange(samples) / FS
    return np.round(amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """G.711 mu-law (the engine's own codec, so both references and the node agree)."""
    from media import _dsp

    return _dsp.ulaw_encode(pcm.astype("<i2").tobytes())


# --- echo ---------------------------------------------------------------------------------


class Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        header = struct.pack("!BBHII", 0x80, 0, 0, 0, 0x1234ABCD)
        self.menu = header + ulaw_encode(tone_pcm(MENU_HZ, FRAME))
        self.keys = {d: header + ulaw_encode(tone_pcm(key_hz(d), FRAME)) for d in range(1, 10)}
        self.ended: dict[tuple[str, int], int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's UDPTransport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or self.transport is None:
            return
        pt = data[1] & 0x7F
        if pt == 0:
            self.transport.sendto(self.menu, addr)
        elif pt == TE_PT and len(data) >= 16 and data[13] & 0x80:
            ts = struct.unpack_from("!I", data, 4)[0]
            if self.ended.get(addr) != ts:  # the first of the three end packets
                self.ended[addr] = ts
                packet = self.keys.get(data[12])
                if packet is not None:
                    self.transport.sendto(packet, addr)


async def run_echo(port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(LOOPBACK, port))
    await wait_for_signal()
    transport.close()


# --- engine -------------------------------------------------------------------------------


def parse_request(data: bytes) -> tuple[str, dict[str, list[str]], bytes] | None:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    if not lines or lines[0].startswith("SIP/2.0"):
        return None
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return lines[0].split(" ", 1)[0], headers, body


class EngineRef(asyncio.DatagramProtocol):
    """SIP in, the RTP engine out; one leg per Call-ID."""

    def __init__(self, engine, prompts: Path, sip_port: int) -> None:  # type: ignore[no-untyped-def]
        from media.items import Prompt

        self.engine = engine
        self.sip_port = sip_port
        self.menu = [Prompt(str(prompts / "menu.wav"))]
        self.key_items = {str(d): [Prompt(str(prompts / f"key{d}.wav"))] for d in range(1, 10)}
        self.answers: dict[str, bytes] = {}  # Call-ID → our 200 (retransmitted INVITEs)
        self.playing_key: dict[str, int] = {}  # Call-ID → item id of the key prompt playing
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's UDPTransport

    def respond(self, headers: dict[str, list[str]], status: str, extra: str, body: bytes) -> bytes:
        lines = [f"SIP/2.0 {status}"]
        lines += [f"Via: {v}" for v in headers.get("via", [])]
        for name in ("from", "to", "call-id", "cseq"):
            lines += [f"{name.title()}: {v}" for v in headers.get(name, [])]
        text = "\r\n".join(lines) + "\r\n" + extra + f"Content-Length: {len(body)}\r\n\r\n"
        return text.encode() + body

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = parse_request(data)
        if request is None or self.transport is None:
            return
        method, headers, body = request
        call_id = (headers.get("call-id") or [""])[0]
        if method == "INVITE":
            answer = self.answers.get(call_id)
            if answer is None:
                sdp = self.engine.answer_local(call_id, body)
                tag = secrets.token_hex(4)
                headers["to"] = [f"{headers['to'][0]};tag={tag}"]
                answer = self.respond(
                    headers,
                    "200 OK",
                    f"Contact: <sip:ref@{LOOPBACK}:{self.sip_port}>\r\n"
                    "Content-Type: application/sdp\r\n",
                    sdp,
                )
                self.answers[call_id] = answer
                self.engine.play(call_id, self.menu, barge_in=True)
            self.transport.sendto(answer, addr)
        elif method in ("BYE", "OPTIONS"):
            self.transport.sendto(self.respond(headers, "200 OK", "", b""), addr)
            if method == "BYE" and self.answers.pop(call_id, None) is not None:
                self.playing_key.pop(call_id, None)
                self.engine.release(call_id)

    def media_event(self, event) -> None:  # type: ignore[no-untyped-def]
        from media.events import DtmfDigit, PlaybackDone

        leg = event.leg_id
        if leg not in self.answers:
            return
        if isinstance(event, DtmfDigit):
            items = self.key_items.get(event.digit)
            if items is None or leg in self.playing_key:
                return
            self.engine.stop_play(leg)  # as hotline's IVR does (barge-in already cleared it)
            self.playing_key[leg] = self.engine.play(leg, items)[0]
        elif isinstance(event, PlaybackDone) and not event.stopped:
            if self.playing_key.get(leg) == event.item_id:
                del self.playing_key[leg]
                self.engine.play(leg, self.menu, barge_in=True)


async def run_engine(sip_port: int, prompts: Path, port_min: int, port_max: int) -> None:
    from media.engine import RtpEngine

    loop = asyncio.get_running_loop()
    engine = RtpEngine(LOOPBACK, port_min, port_max, 30.0)
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: EngineRef(engine, prompts, sip_port), local_addr=(LOOPBACK, sip_port)
        )
        engine.attach(loop, protocol.media_event)
        await wait_for_signal()
        engine.detach()
        transport.close()
    finally:
        engine.close()


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    engine = sub.add_parser("engine")
    engine.add_argument("--sip", type=int, required=True)
    engine.add_argument("--prompts", type=Path, required=True)
    engine.add_argument("--rtp-ports", required=True, metavar="MIN:MAX")
    echo = sub.add_parser("echo")
    echo.add_argument("--rtp", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        if args.mode == "echo":
            runner(run_echo(args.rtp))
        else:
            low, _, high = args.rtp_ports.partition(":")
            runner(run_engine(args.sip, args.prompts, int(low), int(high)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
