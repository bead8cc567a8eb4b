"""Fixtures for loopback tests: factories for the hotline node, pjsua2, baresip and linphone
agents, SIPp runs and RTP callers.

Every test under tests/loopback/ is marked `loopback` (select or skip them with
`-m loopback` / `-m "not loopback"`). Each factory ends what it started when the test ends,
even on failure; when a test fails, the diagnostics of every peer and node it used (events,
log tails, SIPp error logs) are attached to the report as extra sections. The per-test time
limit comes from pytest-timeout (`timeout = 120` in pyproject.toml).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from unit.tlscerts import Pki, make_pki, openssl_available

from .baresip_agent import BaresipAgent, require_baresip
from .harness import (
    HotlineNode,
    PjAgent,
    Sipp,
    require_peer,
    require_pjsua2,
    require_sipp,
)
from .ivr_peers import RtpCaller
from .linphone_agent import LinphoneAgent, require_linphone

LOOPBACK_DIR = Path(__file__).resolve().parent
PEERS_KEY = pytest.StashKey[list[Any]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory as `loopback`."""
    for item in items:
        if LOOPBACK_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.loopback)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed test, add each used peer's diagnostics as a report section."""
    report = yield
    if report.failed and report.when in ("call", "setup"):
        for peer in item.stash.get(PEERS_KEY, []):
            name = getattr(peer, "name", type(peer).__name__)
            report.sections.append((f"loopback: {name}", peer.describe()))
    return report


def _register(request: pytest.FixtureRequest, peer: Any) -> None:
    request.node.stash.setdefault(PEERS_KEY, []).append(peer)


def _started(
    request: pytest.FixtureRequest, build: Callable[..., Any], signal_first: bool = False
) -> Iterator[Any]:
    """A factory fixture's body: `make(**kwargs)` builds a peer, registers it for failure
    reports and starts it; every peer made is stopped, last first, when the test ends.
    `signal_first`: all are asked to end (`signal_stop`) before the first is waited for, so
    they end side by side (PjAgent)."""
    started: list[Any] = []

    def make(**kwargs: Any) -> Any:
        peer = build(**kwargs)
        started.append(peer)
        _register(request, peer)
        return peer.start()

    yield make
    for peer in started if signal_first else ():
        peer.signal_stop()
    for peer in reversed(started):
        peer.stop()


@pytest.fixture
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., HotlineNode]]:
    """Factory: `node(queues={...}, agents={...}, extra_args=[...])` -> a started HotlineNode.

    Keyword arguments other than HotlineNode's own are per-file config overrides.
    """
    names = (f"node{n}" for n in itertools.count(1))

    def build(**kwargs: Any) -> HotlineNode:
        name = next(names)
        return HotlineNode(tmp_path / name, name=name, **kwargs)

    yield from _started(request, build)


@pytest.fixture
def pjagent(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., PjAgent]]:
    """Factory: `pjagent(user="1001", registrar=node, auto_answer=200, ...)` -> started agent.

    `registrar` may be a HotlineNode (its address is used) or "HOST:PORT". The password
    defaults to the demo one, `pw<user>`. Waits for the agent's "ready" event only; wait for
    "registered" in the test.
    """
    require_pjsua2()

    def build(**kwargs: Any) -> PjAgent:
        registrar = kwargs.get("registrar")
        if registrar is not None and not isinstance(registrar, str):
            kwargs["registrar"] = registrar.address
        kwargs.setdefault("log_dir", tmp_path / "agents")
        return PjAgent(**kwargs)

    yield from _started(request, build, signal_first=True)


@pytest.fixture
def sipp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Sipp]]:
    """Factory: `sipp("scenario.xml", remote=node.address, ...)` -> a Sipp, not yet started.

    Call `.start()` then `.wait()`, or `.run()`; `.check()` raises with SIPp's logs unless it
    exited 0. Any SIPp still running at the end of the test is stopped.
    """
    require_sipp()
    created: list[Sipp] = []

    def make(scenario: str | Path | None = None, **kwargs: Any) -> Sipp:
        kwargs.setdefault("work_dir", tmp_path / "sipp")
        run = Sipp(scenario, **kwargs)
        created.append(run)
        _register(request, run)
        return run

    yield make
    for run in reversed(created):
        run.stop()


@pytest.fixture
def rtp_caller(request: pytest.FixtureRequest) -> Iterator[Callable[..., RtpCaller]]:
    """Factory: `rtp_caller(node, called="12345", offer=(0,), ...)` -> an RtpCaller (a Python
    carrier caller that records the RTP it hears; see ivr_peers.py), closed at the end.
    `node` may be a HotlineNode or "HOST:PORT". Nothing is sent until `.call()`."""
    made: list[RtpCaller] = []

    def make(node: Any, **kwargs: Any) -> RtpCaller:
        address = node if isinstance(node, str) else node.address
        kwargs.setdefault("name", f"rtp-caller-{len(made) + 1}")
        caller = RtpCaller(address, **kwargs)
        made.append(caller)
        _register(request, caller)
        return caller

    yield make
    for caller in reversed(made):
        caller.close()


@pytest.fixture
def baresip(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: `baresip(registrar=node, user="1001", tone_hz=1000)` -> a started
    BaresipAgent (its account created; wait for REGISTER_OK in the test), stopped at the end.
    `registrar` may be a HotlineNode (its address is used) or "HOST:PORT" (`[::1]:PORT` with
    `host="::1"`: a phone on IPv6). Skips (fails under HOTLINE_REQUIRE_PEERS=1) when baresip
    is not installed."""
    require_baresip()

    def build(*, registrar: HotlineNode | str, **kwargs: Any) -> BaresipAgent:
        kwargs.setdefault("log_dir", tmp_path / "baresip")
        address = registrar if isinstance(registrar, str) else registrar.address
        return BaresipAgent(registrar=address, **kwargs)

    yield from _started(request, build)


@pytest.fixture
def linphone(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: `linphone(registrar="HOST:PORT", user="1001", transport="udp")` -> a started
    LinphoneAgent (its REGISTER sent; wait_registered in the test), stopped at the end.
    Skips (fails under HOTLINE_REQUIRE_PEERS=1) when linphone-daemon is not installed."""
    require_linphone()

    def build(**kwargs: Any) -> LinphoneAgent:
        kwargs.setdefault("log_dir", tmp_path / "linphone")
        return LinphoneAgent(**kwargs)

    yield from _started(request, build)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Throw-away certificates for TLS (tests/unit/tlscerts.py), made once per module."""
    require_peer("openssl", openssl_available(), "apt-get install openssl")
    return make_pki(tmp_path_factory.mktemp("pki"))
