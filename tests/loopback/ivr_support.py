"""Configuration and helpers shared by the IVR loopback tests (test_ivr*.py).

The node runs the shipped config/ with short English prompt texts (the demo's Chinese
prompts last 3 to 12 s each; the flows, routes, queues and schedules stay as shipped) and
`--clock` pinned to a Monday in office hours or a Sunday.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ivr.nodes import PromptSpec
from ivr.prompts import PromptLibrary

from .harness import CONFIG_DIR, REPO_ROOT, HotlineNode, PjAgent, Sipp, deep_merge
from .ivr_peers import correlation_peak, read_wav, write_inband_key_pcap

OFFICE_HOURS = "2026-12-07T10:00:00+08:00"  # a Monday, 10:00 in Asia/Shanghai
CLOSED = "2026-12-06T10:00:00+08:00"  # a Sunday
CALLER = "13800138000"
SIPP_CAPTURES = Path("/usr/share/sip-tester")  # Debian sip-tester: dtmf_2833_<key>.pcap


def en(text: str) -> dict[str, str]:
    return {"text": text, "voice": "en"}


#: Every prompt of the demo dialplan, short. `welcome` is the one the audio tests look for.
SHORT_PROMPTS = {
    "welcome": en("Welcome to the test hotline."),
    "welcome_en": en("Hello."),
    "menu_main": en("Press one or two."),
    "invalid": en("Wrong key."),
    "no_input": en("No key."),
    "please_wait": en("Please wait."),
    "closed_main": en("We are closed."),
    "closed_main_en": en("Leave a message."),
    "message_thanks": en("Thank you."),
    "welcome_legal": en("Legal aid."),
    "legal_after_hours": en("Transferring."),
    "welcome_market": en("Market line."),
    "menu_market": en("Press one."),
    "blocked": en("Blocked."),
    "blocked_en": en("Goodbye."),
    "survey_ask": en("Rate us."),
    "survey_invalid": en("One to five."),
    "survey_thanks": en("Thanks."),
}
#: The test dialplan: shipped flows with short prompts and shorter waits for a key.
TEST_DIALPLAN: dict[str, Any] = {
    "prompts": SHORT_PROMPTS,
    "flows": {
        "main": {"nodes": {"menu": {"timeout": 2.0}}},
        "survey": {"nodes": {"rate": {"timeout": 1.5, "retries": 0}}},
    },
}


def ivr_node(
    node: Callable[..., HotlineNode], clock: str = OFFICE_HOURS, **overrides: Any
) -> HotlineNode:
    """A node on the test dialplan (plus `dialplan=` changes) with its clock at `clock`."""
    dialplan = deep_merge(TEST_DIALPLAN, overrides.pop("dialplan", {}))
    return node(extra_args=["--clock", clock], dialplan=dialplan, **overrides)


def register(pjagent: Callable[..., PjAgent], node: HotlineNode, user: str, **kw: Any) -> PjAgent:
    agent = pjagent(user=user, registrar=node, **kw)
    assert agent.wait_for("registered", timeout=10)["code"] == 200
    return agent


def key_scenario(directory: Path, key: str, *, inband: bool = False) -> Path:
    """A copy of uac_ivr_key(.inband).xml next to the capture `ivr_key.pcap` it plays: SIPp's
    RFC 4733 capture of `key`, or in-band tones written here."""
    directory.mkdir(parents=True)
    name = "uac_ivr_key_inband" if inband else "uac_ivr_key"
    scenario = directory / f"{name}.xml"
    shutil.copyfile(Sipp.find_scenario(name), scenario)
    if inband:
        write_inband_key_pcap(directory / "ivr_key.pcap", key)
    else:
        capture = {"#": "pound", "*": "star"}.get(key, key)
        shutil.copyfile(SIPP_CAPTURES / f"dtmf_2833_{capture}.pcap", directory / "ivr_key.pcap")
    return scenario


def ivr_caller(
    sipp: Callable[..., Sipp],
    node: HotlineNode,
    scenario: Path,
    *,
    press_ms: int = 800,
    service: str = "12345",
    **kw: Any,
) -> Sipp:
    kw.setdefault("timeout", 20.0)
    extra = ["-set", "press_ms", str(press_ms), *kw.pop("extra_args", [])]
    return sipp(scenario, remote=node.address, service=service, extra_args=extra, **kw)


def ended_calls(node: HotlineNode, count: int = 1, timeout: float = 8.0) -> list[dict[str, Any]]:
    return node.wait_for_rows(
        "calls",
        lambda rows: len(rows) == count and all(row["end"] is not None for row in rows),
        timeout=timeout,
    )


def variables(call: dict[str, Any]) -> dict[str, str]:
    return json.loads(call["variables"] or "{}")


def lower_keys(headers: dict[str, str]) -> dict[str, str]:
    """SIP header names are case-insensitive (RFC 3261 §7.3.1)."""
    return {name.lower(): value for name, value in headers.items()}


def rendered_prompt(node: HotlineNode, tmp: Path, name: str) -> Path:
    """The node's cached WAV of the text prompt `name` (<data>/prompts/tts-*.wav): the prompt
    library names cache files by what they hold, so rendering the same spec into an empty
    cache here gives the file's name."""
    spec = SHORT_PROMPTS[name]
    library = PromptLibrary(
        {name: PromptSpec(text=spec["text"], voice=spec["voice"])},
        node.config_dir,
        tmp,
        default_voice="none",  # no number words: only this prompt is rendered
    )
    assert library.prepare() == []
    (item,) = library.items(name, {})
    path = node.data_dir / "prompts" / Path(item.path).name  # type: ignore[attr-defined]
    assert path.name.startswith("tts-") and path.exists(), sorted(
        p.name for p in (node.data_dir / "prompts").iterdir()
    )
    return path


def prompt_samples(node: HotlineNode, tmp: Path, name: str) -> np.ndarray:
    """The samples of the node's rendering of prompt `name`."""
    return read_wav(rendered_prompt(node, tmp / name, name)).samples


def find_in_order(
    heard: np.ndarray, templates: Sequence[tuple[str, np.ndarray]], threshold: float = 0.8
) -> list[tuple[str, float, int]]:
    """Find each template in `heard`, each after the end of the one before it; returns
    (name, correlation peak, offset) and fails on the first one below `threshold`."""
    found: list[tuple[str, float, int]] = []
    start = 0
    for name, template in templates:
        score, offset = correlation_peak(heard[start:], template)
        found.append((name, score, start + offset))
        assert score > threshold, f"{name} not heard in order (peak {score:.2f}); {found}"
        start += offset + len(template)
    return found


def hotline_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """`hotline ARGS` of this tree (python -m softswitch.cli), its output captured."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "softswitch.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO_ROOT),
        env=env,
        check=False,
    )


def generated_ivr_trace(directory: Path, calls_per_hour: int, talk: str, patience: str) -> Path:
    """`hotline loadtest generate` of a flat hour of calls to the 12345 IVR, each caller
    pressing 1 after 1 s (the general queue); the trace's path."""
    keys = directory / "keys.yaml"
    keys.write_text('think: fixed:1\nsequences:\n  - {keys: "1", weight: 1}\n', encoding="utf-8")
    trace = directory / "trace.csv"
    made = hotline_cli(
        "loadtest", "generate", "--out", str(trace), "--seed", "5", "--profile", "flat",
        "--hours", "08-09", "--calls-per-hour", str(calls_per_hour), "--talk", talk,
        "--patience", patience, "--keys", str(keys), "--called", "12345",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return trace


def trunks_override(**fields: Any) -> dict[str, Any]:
    """trunks.yaml as shipped with the settings of trunk `carrier` changed by `fields`."""
    shipped = yaml.safe_load((CONFIG_DIR / "trunks.yaml").read_text(encoding="utf-8"))
    trunks = [{**t, **fields} if t["name"] == "carrier" else t for t in shipped["trunks"]]
    return {"trunks": trunks}


def raw_invite(number: str) -> bytes:
    """An INVITE without SDP for `number`, for HotlineNode.send_sip (routing checks)."""
    call_id = secrets.token_hex(6)
    return (
        f"INVITE sip:{number}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{{local_port}};branch=z9hG4bK{call_id};rport\r\n"
        f"From: <sip:13800138000@127.0.0.1>;tag={call_id}\r\nTo: <sip:{number}@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        "Contact: <sip:carrier@127.0.0.1:{local_port}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def log_seconds(line: str) -> float:
    """The time of day of a node log line (`2026-12-03 12:55:05,044 INFO ...`), in seconds."""
    clock = line.split()[1]
    hours, minutes, rest = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest.replace(",", "."))
