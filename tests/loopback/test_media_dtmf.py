"""Keys pressed at real peers reach the node's Python side (issue 4, MED-1 DTMF end to end).

Three ways a key arrives, each from an implementation that is not ours:

- RFC 4733 telephone-events from the carrier: SIPp replays the capture it ships
  (dtmf_2833_1.pcap); the node logs the key on the carrier leg and the engine relays it to
  the pjsua2 agent, which reports it.
- In-band tones from a carrier without telephone-event: a PCMU capture written here (numpy
  synthesis at -10 dBm0, G.711 μ-law, Ethernet/IPv4/UDP/RTP records) replayed by SIPp.
- SIP INFO (application/dtmf-relay) from the pjsua2 agent: the node logs the key on the agent
  leg, answers the INFO itself and sends the key to the carrier as RFC 4733 events (the
  carrier negotiated telephone-event).

The B2BUA writes one line per key: `call=<id> sip=<Call-ID> DTMF <key> on <leg> (<source>)`.
"""

from __future__ import annotations

import re
import shutil
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from .harness import HotlineNode, PjAgent, Sipp

# Every test here ends well within this (node start, registration, one call of ~3 s).
pytestmark = pytest.mark.timeout(20)

AGENT = "1001"  # an agent of the shipped config, member of the queue behind service 9000
SERVICE = "9000"
SIPP_TIMEOUT = 12.0

_DTMF_LINE = re.compile(r"call=(\S+) sip=(\S+) DTMF (\S) on (\S+) \((\w+)\)")


class NodeKey(NamedTuple):
    """One `DTMF` line of the node log."""

    call: str
    sip_call_id: str
    digit: str
    leg: str
    source: str


def node_keys(log: str) -> list[NodeKey]:
    """Every key the node logged, in order."""
    return [NodeKey(*match.groups()) for match in _DTMF_LINE.finditer(log)]


def sipp_call_id(run: Sipp) -> str:
    """The Call-ID of the (single) call of a SIPp UAC run, from its message trace."""
    text = run.message_path.read_text(encoding="utf-8", errors="replace")
    match = re.search(r"^\s*Call-ID:\s*(\S+)", text, re.MULTILINE | re.IGNORECASE)
    assert match, f"no Call-ID in {run.message_path}"
    return match.group(1)


def start_call(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    **agent_options: object,
) -> tuple[HotlineNode, PjAgent]:
    """A node with one registered pjsua2 agent that answers at once."""
    hotline = node()
    agent = pjagent(user=AGENT, registrar=hotline, **agent_options)
    assert agent.wait_for("registered", timeout=8)["code"] == 200
    return hotline, agent


# -- an in-band DTMF capture ----------------------------------------------------------------

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms of PCMU, one byte a sample
# ITU-T Q.23 key frequencies (Hz): row (low group) and column (high group).
DTMF_FREQUENCIES = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip
# 0 dBm0 as a 16-bit sine amplitude: G.711 overloads at about +3.14 dBm0, i.e. full scale.
DBM0_AMPLITUDE = 32767 * 10 ** (-3.14 / 20)
# Destination and source MAC (locally administered), EtherType IPv4.
ETHERNET_HEADER = bytes.fromhex("02 00 00 00 00 02  02 00 00 00 00 01  08 00")


def dtmf_pcm(
    digits: str, tone_ms: int, pause_ms: int, lead_ms: int, level_dbm0: float
) -> np.ndarray:
    """Linear 16-bit samples: `lead_ms` of silence, then per key `tone_ms` of its two tones
    (each at `level_dbm0`, so no twist) and `pause_ms` of silence."""
    amplitude = DBM0_AMPLITUDE * 10 ** (level_dbm0 / 20)
    t = np.arange(tone_ms * SAMPLE_RATE // 1000) / SAMPLE_RATE
    parts = [np.zeros(lead_ms * SAMPLE_RATE // 1000)]
    for digit in digits:
        low, high = DTMF_FREQUENCIES[digit]
        parts.append(amplitude * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)))
        parts.append(np.zeros(pause_ms * SAMPLE_RATE // 1000))
    return np.concatenate(parts)


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """ITU-T G.711 μ-law of 16-bit linear samples, written here rather than taken from the
    engine under test: sign, 3-bit segment, 4-bit step, all bits inverted. As in the ITU-T
    G.191 reference encoder, a negative sample's magnitude is its one's complement (-x - 1)
    and the bias is 33 on 14 bits (132 on 16)."""
    x = np.clip(np.rint(pcm), -32768, 32767).astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.where(x < 0, ~x, x), 32635) + 132
    _fraction, exponent = np.frexp(magnitude.astype(np.float64))  # magnitude < 2**exponent
    segment = exponent.astype(np.int32) - 8  # 132..255 -> 0, ..., 16384..32767 -> 7
    step = (magnitude >> (segment + 3)) & 0x0F
    return (~(sign | (segment << 4) | step) & 0xFF).astype(np.uint8).tobytes()


def _ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    return ~_ones_complement_sum(data) & 0xFFFF


def rtp_pcap(
    payloads: Sequence[bytes],
    *,
    payload_type: int,
    ssrc: int = 0x5EED0D7F,
    first_seq: int = 4711,
    first_timestamp: int = 160_000,
    ptime_ms: int = 20,
    src: tuple[str, int] = ("192.0.2.10", 40000),
    dst: tuple[str, int] = ("192.0.2.20", 50000),
) -> bytes:
    """A libpcap file (Ethernet link type) of one RTP stream, one packet per payload,
    `ptime_ms` apart. SIPp rewrites the addresses and ports when it replays it."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    src_ip, dst_ip = (bytes(map(int, ip.split("."))) for ip in (src[0], dst[0]))
    for index, payload in enumerate(payloads):
        marker = 0x80 if index == 0 else 0  # RFC 3551 §4.1: first packet of a talkspurt
        rtp = (
            struct.pack(
                "!BBHII",
                0x80,  # RFC 3550 §5.1: version 2, no padding, no extension, no CSRC
                marker | payload_type,
                (first_seq + index) & 0xFFFF,
                (first_timestamp + index * len(payload)) & 0xFFFFFFFF,
                ssrc,
            )
            + payload
        )
        udp_length = 8 + len(rtp)
        pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 17, udp_length)
        header = struct.pack("!HHHH", src[1], dst[1], udp_length, 0)
        udp_sum = _checksum(pseudo + header + rtp) or 0xFFFF  # RFC 768: 0 means "none"
        udp = struct.pack("!HHHH", src[1], dst[1], udp_length, udp_sum) + rtp
        ip_fields = (0x45, 0, 20 + len(udp), index & 0xFFFF, 0x4000, 64, 17)
        ip = struct.pack("!BBHHHBBH4s4s", *ip_fields, 0, src_ip, dst_ip)
        ip = struct.pack("!BBHHHBBH4s4s", *ip_fields, _checksum(ip), src_ip, dst_ip) + udp
        frame = ETHERNET_HEADER + ip
        micros = index * ptime_ms * 1000
        out.append(
            struct.pack(
                "<IIII",
                1_700_000_000 + micros // 1_000_000,
                micros % 1_000_000,
                len(frame),
                len(frame),
            )
        )
        out.append(frame)
    return b"".join(out)


def write_inband_pcap(path: Path, digits: str) -> int:
    """PCMU RTP with `digits` as tones (100 ms on, 100 ms off, -10 dBm0) after 200 ms of
    silence and with 200 ms of silence after; returns the packet count."""
    pcm = dtmf_pcm(digits, tone_ms=100, pause_ms=100, lead_ms=200, level_dbm0=-10.0)
    pcm = np.concatenate([pcm, np.zeros(200 * SAMPLE_RATE // 1000)])
    codes = ulaw_encode(pcm)
    assert len(codes) % FRAME_SAMPLES == 0
    frames = [codes[i : i + FRAME_SAMPLES] for i in range(0, len(codes), FRAME_SAMPLES)]
    path.write_bytes(rtp_pcap(frames, payload_type=0))
    return len(frames)


def test_capture_ulaw_encoder_hits_g711_reference_codes() -> None:
    # Silence, the smallest negative step, the clipped extremes and the top of segment 5.
    samples = np.array([0, -1, 32767, -32768, 8031, -8032])
    assert list(ulaw_encode(samples)) == [0xFF, 0x7F, 0x80, 0x00, 0xA0, 0x20]


# -- the tests ------------------------------------------------------------------------------


def test_rfc4733_key_from_carrier_reaches_node_and_is_relayed_to_agent(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    hotline, agent = start_call(node, pjagent)
    caller = sipp(
        "uac_call_dtmf2833", remote=hotline.address, service=SERVICE, timeout=SIPP_TIMEOUT
    )
    caller.start()

    # The engine relays the carrier's event to the agent's leg: pjsip reports the key.
    assert agent.wait_for("dtmf", timeout=8)["digit"] == "1"
    hotline.wait_for_log("DTMF 1 on", timeout=5)
    caller.wait()
    caller.check()

    keys = node_keys(hotline.log_text())
    # One press (ten packets, three of them end retransmits) is one key, on the carrier leg.
    assert [(k.digit, k.leg, k.source) for k in keys] == [("1", f"{keys[0].call}-a", "rfc4733")]
    assert keys[0].sip_call_id == sipp_call_id(caller)
    assert [event["digit"] for event in agent.events("dtmf")] == ["1"]


def test_inband_keys_in_carrier_pcmu_reach_node(
    node: Callable[..., HotlineNode],
    pjagent: Callable[..., PjAgent],
    sipp: Callable[..., Sipp],
    tmp_path: Path,
) -> None:
    hotline, agent = start_call(node, pjagent)
    # SIPp loads the capture with the scenario and looks for it next to the scenario: both go
    # into one directory of this test.
    media_dir = tmp_path / "inband"
    media_dir.mkdir()
    scenario = media_dir / "uac_call_inband.xml"
    shutil.copyfile(Sipp.find_scenario("uac_call_inband"), scenario)
    packets = write_inband_pcap(media_dir / "inband_dtmf.pcap", "59")
    assert packets == (200 + 2 * 200 + 200) // 20
    caller = sipp(scenario, remote=hotline.address, service=SERVICE, timeout=SIPP_TIMEOUT)
    caller.start()

    hotline.wait_for_log("DTMF 9 on", timeout=8)
    caller.wait()
    caller.check()

    # The carrier offered no telephone-event, so the node's answer names none either.
    trace = caller.message_path.read_text(encoding="utf-8", errors="replace")
    assert "telephone-event" not in trace
    keys = node_keys(hotline.log_text())
    call = keys[0].call
    assert [(k.digit, k.leg, k.source) for k in keys] == [
        ("5", f"{call}-a", "inband"),
        ("9", f"{call}-a", "inband"),
    ]
    assert keys[0].sip_call_id == sipp_call_id(caller)
    # The agent's phone negotiated telephone-event: the carrier's in-band keys reach it as
    # RFC 4733 events too (pjsua reports RFC 4733 digits only, never tones it hears).
    agent.wait_for("dtmf", timeout=5, digit="9")
    assert [event["digit"] for event in agent.events("dtmf")] == ["5", "9"]


def test_sip_info_key_from_agent_reaches_node_and_the_carrier_as_rfc4733(
    node: Callable[..., HotlineNode], pjagent: Callable[..., PjAgent], sipp: Callable[..., Sipp]
) -> None:
    """The carrier offered telephone-event: the agent's INFO is answered by the node and the
    key goes to the carrier as RFC 4733 events, not as an INFO it did not ask for (issue 9)."""
    hotline, agent = start_call(node, pjagent, dtmf="7", dtmf_method="info")
    caller = sipp(
        "uac_call", remote=hotline.address, service=SERVICE, duration_ms=3000,
        timeout=SIPP_TIMEOUT,
    )  # fmt: skip
    caller.start()

    sent = agent.wait_for("dtmf_sent", timeout=8)
    assert (sent["digits"], sent["method"]) == ("7", "info")
    hotline.wait_for_log("DTMF 7 on", timeout=5)
    line = hotline.wait_for_log("key 7 by SIP INFO", timeout=5)
    assert "RFC 4733" in line, line
    caller.wait()
    caller.check()

    keys = node_keys(hotline.log_text())
    assert [(k.digit, k.leg, k.source) for k in keys] == [("7", f"{keys[0].call}-b1", "info")]
    assert keys[0].sip_call_id == sipp_call_id(caller)
    trace = caller.message_path.read_text(encoding="utf-8", errors="replace")
    assert "INFO sip:" not in trace  # no INFO reached the carrier
    # The node's own 200 to the INFO reached the agent (pjsip writes its log file in
    # blocks: stopping the agent flushes it).
    agent.stop()
    pj_log = agent.pj_log_path.read_text(encoding="utf-8", errors="replace")
    assert re.search(r"Response msg 200/INFO/cseq=", pj_log), pj_log[-3000:]
