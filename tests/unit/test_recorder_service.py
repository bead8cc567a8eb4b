"""The recorder service (SPEC REC-1, REC-2, REC-4, REC-5): `recorder.service.Recorder`.

The recorder gets the bus events of `softswitch.call.events` as call control publishes them
and PCM through a fake media engine (the tap calls of `media.engine.RtpEngine`, fed by the
test in 20 ms blocks, drained through `Recorder.tap_data` as the node's `TapData` handler
does). Everything it writes lands in a real index and real Ogg Opus files under tmp_path;
`wait_idle` waits for its worker and QA threads. A node killed mid-call is a child process
that records three seconds and SIGKILLs itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import soundfile

from recorder.backup import file_sha256
from recorder.index import Recording, RecordingIndex, SearchFilter, Segment, Viewer
from recorder.opus import RATE, ends_with_eos, read_ogg_opus
from recorder.service import DAY, TAP_SUFFIX, Recorder, relative_path
from softswitch.call import events as ev
from softswitch.config import RecordingConfig, RecordingQa, RetentionPolicy

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000.0
BLOCK = RATE // 50  # frames in 20 ms
#: Room checks off (the test machine's free space is not the point) and the default QA.
CONFIG = RecordingConfig(min_free_mb=0)


class Block(NamedTuple):
    pcm: bytes
    frames: int
    overflow: int = 0  # frames the ring dropped so far, as media.events.TapBlock


class FakeMedia:
    """The tap half of the media engine: `feed` is audio arriving, `tap_read` drains it."""

    anchors = True

    def __init__(self) -> None:
        self.taps: dict[str, bytearray] = {}
        self.overflow: dict[str, int] = {}
        self.started: list[tuple[str, str, str | None, bool]] = []
        self.stopped: list[str] = []

    def tap_start(self, name: str, leg_a: str, leg_b: str | None, *, heard: bool = False) -> None:
        if name in self.taps:
            raise ValueError(f"{name} is already tapped")
        self.taps[name] = bytearray()
        self.started.append((name, leg_a, leg_b, heard))

    def tap_read(self, name: str) -> Block:
        data = bytes(self.taps[name])
        self.taps[name].clear()
        return Block(data, len(data) // 4, self.overflow.get(name, 0))

    def tap_stop(self, name: str) -> None:
        del self.taps[name]
        self.stopped.append(name)


class PassThrough(FakeMedia):
    anchors = False


def tone(seconds: float, hz: float, level: float = 8000.0) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(round(seconds * RATE)) / RATE) * level


def stereo(left: np.ndarray, right: np.ndarray) -> bytes:
    return np.stack([left, right], axis=1).astype(np.int16).tobytes()


def dominant_hz(signal: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / RATE)[int(np.argmax(spectrum))])


class Harness:
    """One recorder with its fake media, what it published, and a reading index."""

    def __init__(self, tmp_path: Path, config: RecordingConfig, media: FakeMedia) -> None:
        self.directory = tmp_path / "recordings"
        self.index_path = tmp_path / "recordings.db"
        self.media = media
        self.published: list[Any] = []
        self.recorder = Recorder(
            config,
            self.directory,
            self.index_path,
            media,
            publish=self.published.append,
            clock=lambda: T0 + 1000,
        )
        self.index = RecordingIndex(self.index_path, self.directory)

    def send(self, *events: Any) -> None:
        for event in events:
            self.recorder(event)

    def feed(self, call_id: str, pcm: bytes) -> None:
        """Audio reaching the call's tap, drained block by block as TapData would."""
        tap = f"{call_id}{TAP_SUFFIX}"
        for at in range(0, len(pcm), BLOCK * 4):
            if tap in self.media.taps:
                self.media.taps[tap] += pcm[at : at + BLOCK * 4]
                self.recorder.tap_data(tap)

    def idle(self) -> None:
        assert self.recorder.wait_idle(20.0)

    def row(self, recording_id: str) -> Recording:
        row = self.index.get(recording_id)
        assert row is not None, f"no index row for {recording_id}"
        return row

    def alerts(self) -> list[ev.RecordingAlert]:
        return [e for e in self.published if isinstance(e, ev.RecordingAlert)]

    def decode(self, row: Recording) -> tuple[np.ndarray, bool]:
        pcm, channels, complete = read_ogg_opus(self.directory / row.path)
        return np.frombuffer(pcm, dtype=np.int16).reshape(-1, channels), complete


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(config: RecordingConfig = CONFIG, media: FakeMedia | None = None) -> Harness:
        harness = Harness(tmp_path, config, media or FakeMedia())
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.recorder.close(10.0)
        harness.index.close()


def started(call_id: str, at: float = T0, caller: str = "0301111", called: str = "110") -> Any:
    return ev.CallStarted(at, call_id, f"sip-{call_id}", "trunk1", caller, called)


def ended(call_id: str, at: float, **variables: str) -> Any:
    return ev.CallEnded(at, call_id, "answered", "caller", None, 5.0, 2.0, variables)


def agent_leg(call_id: str, at: float, agent: str, leg: str) -> list[Any]:
    """An agent's leg dialled and answered at `at`."""
    return [
        ev.LegStarted(at - 1, call_id, leg, "out", f"sip-{leg}", f"sip:{agent}@lan", agent),
        ev.LegProgress(at - 0.5, call_id, leg, "ringing"),
        ev.LegProgress(at, call_id, leg, "answer", 200),
    ]


# --- a whole call -----------------------------------------------------------------------------


def test_an_answered_call_is_recorded_whole_and_indexed_with_its_call_data(
    make: Callable[..., Harness],
) -> None:
    config = RecordingConfig(
        min_free_mb=0,
        audio_days=365,
        policies=(
            RetentionPolicy(name="other", queues=("other",), audio_days=10),
            RetentionPolicy(name="sales", queues=("sales",), audio_days=90, records_days=400),
        ),
    )
    h = make(config)
    h.send(
        started("c1"),
        ev.VariableChanged(T0 + 0.5, "c1", "service_type", "complaint"),  # set by the IVR
        ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"),
    )
    assert h.media.started == [(f"c1{TAP_SUFFIX}", "c1-a", None, True)]
    h.feed("c1", stereo(tone(4, 440), np.zeros(4 * RATE)))  # IVR: the caller talks
    h.send(ev.CallQueued(T0 + 5, "c1", "sales"), *agent_leg("c1", T0 + 6, "1001", "c1-b"))
    h.send(ev.VariableChanged(T0 + 6.5, "c1", "customer_id", "K-42"))
    h.feed("c1", stereo(tone(5, 440), tone(5, 1250)))  # caller left, agents right
    h.send(ev.LegStopped(T0 + 8, "c1", "c1-b", "answered"))  # 1001 transfers to 1002 …
    h.send(*agent_leg("c1", T0 + 8.5, "1002", "c1-c"), ended("c1", T0 + 10))  # … who stays
    h.idle()
    assert h.media.stopped == [f"c1{TAP_SUFFIX}"]
    row = h.row("c1")
    assert (row.kind, row.call_id, row.legs) == ("call", "c1", ("c1-a",))
    assert (row.caller, row.called, row.queue) == ("0301111", "110", "sales")
    assert (row.service_type, row.customer_id) == ("complaint", "K-42")
    assert (row.started, row.ended, row.duration) == (T0 + 1, T0 + 10, 9.0)
    assert (row.incomplete, row.error, row.lost_seconds) == (False, None, 0.0)
    assert row.segments == (
        Segment("1001", "c1-b", 5.0, 7.0),
        Segment("1002", "c1-c", 7.5, 9.0),  # still on at the end: up to the end
    )
    assert h.index.get("c1", Viewer.parse("agent:1002")) is not None
    assert h.index.get("c1", Viewer.parse("agent:1003")) is None
    assert (row.policy, row.expires) == ("sales", T0 + 1 + 90 * DAY)
    assert row.path == relative_path("c1", T0 + 1)
    path = h.directory / row.path
    assert (row.sha256, row.bytes) == file_sha256(path)
    assert ends_with_eos(path)
    frames, complete = h.decode(row)
    assert complete and len(frames) == 9 * RATE
    agent = frames[5 * RATE :].astype(float)
    assert dominant_hz(agent[:, 0]) == pytest.approx(440, abs=2)
    assert dominant_hz(agent[:, 1]) == pytest.approx(1250, abs=2)
    ivr = frames[RATE : 3 * RATE].astype(float)
    caller_level, heard_level = np.sqrt(np.mean(ivr**2, axis=0))
    assert caller_level > 10 * heard_level  # the IVR said nothing (20 dB below, or silence)
    assert (h.recorder.stats.started, h.recorder.stats.finished) == (1, 1)
    assert h.recorder.stats.active == 0
    assert h.alerts() == []


def test_the_policy_can_match_the_called_number_and_else_the_default_applies(
    make: Callable[..., Harness],
) -> None:
    config = RecordingConfig(
        min_free_mb=0,
        audio_days=30,
        records_days=60,
        policies=(RetentionPolicy(name="emergency", numbers=("112",), audio_days=3650),),
    )
    h = make(config)
    for call_id, called in (("c1", "112"), ("c2", "110")):
        h.send(
            started(call_id, called=called), ev.CallAnsweredByNode(T0 + 2, call_id, f"{call_id}-a")
        )
        h.feed(call_id, stereo(tone(1, 300), tone(1, 500)))
        h.send(ended(call_id, T0 + 3))
    h.idle()
    assert (h.row("c1").policy, h.row("c1").expires) == ("emergency", T0 + 2 + 3650 * DAY)
    assert (h.row("c2").policy, h.row("c2").expires) == ("default", T0 + 2 + 30 * DAY)
    # records_expire drives the CDR deletion: past it, the call shows up for retention.
    assert h.index.records_expired(T0 + 2 + 60 * DAY) == [("c2", "c2")]


def test_a_reload_during_a_call_leaves_its_policy_as_it_was_when_recording_began(
    make: Callable[..., Harness],
) -> None:
    h = make(RecordingConfig(min_free_mb=0, audio_days=30))
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 2, "c1", "c1-a"))
    h.feed("c1", stereo(tone(1, 300), tone(1, 500)))
    # A reload brings a policy that would match; the call in progress keeps its own.
    h.recorder.config = RecordingConfig(
        min_free_mb=0, policies=(RetentionPolicy(name="long", numbers=("110",), audio_days=900),)
    )
    h.send(ended("c1", T0 + 3))
    h.send(started("c2"), ev.CallAnsweredByNode(T0 + 4, "c2", "c2-a"))
    h.feed("c2", stereo(tone(1, 300), tone(1, 500)))
    h.send(ended("c2", T0 + 5))
    h.idle()
    assert (h.row("c1").policy, h.row("c1").expires) == ("default", T0 + 2 + 30 * DAY)
    assert (h.row("c2").policy, h.row("c2").expires) == ("long", T0 + 4 + 900 * DAY)


def test_a_call_an_agent_answers_directly_is_recorded_from_that_answer(
    make: Callable[..., Harness],
) -> None:
    h = make()
    h.send(started("c1"), ev.LegStarted(T0, "c1", "c1-b", "out", "s", "p", "1001"))
    h.send(ev.LegProgress(T0 + 3, "c1", "c1-b", "answer"))
    h.send(ev.CallAnswered(T0 + 3, "c1", "1001", 3.0, "c1-a"))
    h.feed("c1", stereo(tone(2, 440), tone(2, 900)))
    h.send(ended("c1", T0 + 5))
    h.idle()
    row = h.row("c1")
    assert (row.started, row.duration) == (T0 + 3, 2.0)
    assert row.segments == (Segment("1001", "c1-b", 0.0, 2.0),)  # answered before the tap


def test_start_agent_records_from_the_agents_answer(make: Callable[..., Harness]) -> None:
    h = make(RecordingConfig(min_free_mb=0, start="agent"))
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
    assert h.media.started == []  # the IVR part is not recorded
    h.feed("c1", stereo(tone(3, 440), np.zeros(3 * RATE)))
    h.send(ev.CallQueued(T0 + 4, "c1", "support"), *agent_leg("c1", T0 + 10, "1007", "c1-b"))
    assert h.media.started == [(f"c1{TAP_SUFFIX}", "c1-a", None, True)]
    h.feed("c1", stereo(tone(4, 440), tone(4, 1250)))
    h.send(ev.LegStopped(T0 + 14, "c1", "c1-b"), ended("c1", T0 + 15))
    h.idle()
    row = h.row("c1")
    assert (row.started, row.duration, row.queue) == (T0 + 10, 4.0, "support")
    assert row.segments == (Segment("1007", "c1-b", 0.0, 4.0),)
    frames, _ = h.decode(row)
    assert len(frames) == 4 * RATE


def test_pass_through_media_records_nothing(make: Callable[..., Harness]) -> None:
    h = make(media=PassThrough())
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
    h.send(*agent_leg("c1", T0 + 3, "1001", "c1-b"), ended("c1", T0 + 5))
    h.idle()
    assert h.media.started == []
    assert h.index.get("c1") is None
    assert not any(h.directory.rglob("*.opus"))
    assert h.alerts() == []


def test_recording_disabled_records_nothing(make: Callable[..., Harness]) -> None:
    h = make(RecordingConfig(enabled=False, min_free_mb=0))
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"), ended("c1", T0 + 5))
    h.idle()
    assert h.media.started == [] and h.index.get("c1") is None


def test_events_of_calls_the_recorder_never_saw_start_are_ignored(
    make: Callable[..., Harness],
) -> None:
    h = make()
    h.send(ev.CallAnsweredByNode(T0, "ghost", "ghost-a"), *agent_leg("ghost", T0, "1", "g-b"))
    h.send(ev.CallQueued(T0, "ghost", "q"), ended("ghost", T0 + 1))
    h.recorder.tap_data("nobody-callrec")
    h.idle()
    assert h.media.started == [] and h.index.get("ghost") is None


# --- disks that refuse ---------------------------------------------------------------------


def test_too_little_free_disk_records_nothing_alerts_and_the_call_goes_on(
    make: Callable[..., Harness],
) -> None:
    h = make(RecordingConfig(min_free_mb=10**9))  # a petabyte
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
    (alert,) = h.alerts()
    assert (alert.kind, alert.call_id, alert.at) == ("not_recorded", "c1", T0 + 1000)
    assert "MB free" in alert.detail
    h.send(ev.CallQueued(T0 + 2, "c1", "sales"), *agent_leg("c1", T0 + 3, "1001", "c1-b"))
    h.feed("c1", stereo(tone(1, 440), tone(1, 880)))
    h.send(ev.LegStopped(T0 + 5, "c1", "c1-b"), ended("c1", T0 + 6))
    h.idle()
    assert h.media.started == [] and h.index.get("c1") is None
    assert h.recorder.stats.refused == 1
    assert len(h.alerts()) == 1


def block_directory(h: Harness, how: str) -> None:
    """Make the call's file impossible to create, even for root (modes do not stop root)."""
    rel = Path(relative_path("c1", T0 + 1))
    if how == "day directory is a file":
        (h.directory / rel.parent.parent).mkdir(parents=True)
        (h.directory / rel.parent).write_bytes(b"")  # a regular file where the day goes
    else:
        (h.directory / rel).mkdir(parents=True)  # a directory where the file goes


@pytest.mark.parametrize("how", ["day directory is a file", "file name is a directory"])
def test_an_unwritable_directory_alerts_and_marks_the_row_incomplete(
    make: Callable[..., Harness], how: str
) -> None:
    h = make()
    block_directory(h, how)
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
    h.feed("c1", stereo(tone(2, 440), tone(2, 880)))
    h.send(*agent_leg("c1", T0 + 2, "1001", "c1-b"), ended("c1", T0 + 3))
    h.idle()
    (alert,) = h.alerts()
    assert (alert.kind, alert.call_id) == ("write_failed", "c1")
    row = h.row("c1")
    assert row.incomplete and row.error
    assert "c1.opus" in row.error
    assert (row.ended, row.duration, row.sha256) == (T0 + 3, 0.0, "")
    # The next call, in a directory that works, is recorded as usual.
    h.send(started("c2", at=T0 + 10 * DAY), ev.CallAnsweredByNode(T0 + 10 * DAY, "c2", "c2-a"))
    h.feed("c2", stereo(tone(1, 440), tone(1, 880)))
    h.send(ended("c2", T0 + 10 * DAY + 1))
    h.idle()
    assert not h.row("c2").incomplete and h.row("c2").duration == 1.0


def test_a_recordings_directory_under_a_regular_file_only_raises_alerts(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").write_bytes(b"")
    published: list[Any] = []
    recorder = Recorder(
        CONFIG,
        tmp_path / "data" / "recordings",
        tmp_path / "recordings.db",
        FakeMedia(),
        publish=published.append,
    )
    try:
        recorder(started("c1"))
        recorder(ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
        recorder(ended("c1", T0 + 2))
        assert recorder.wait_idle(10.0)
    finally:
        recorder.close(10.0)
    assert [(a.kind, a.call_id) for a in published] == [("not_recorded", "c1")]


def test_an_index_that_will_not_open_alerts_and_records_nothing(tmp_path: Path) -> None:
    (tmp_path / "recordings.db").write_bytes(b"not a database, a damaged file" * 200)
    published: list[Any] = []
    media = FakeMedia()
    recorder = Recorder(
        CONFIG, tmp_path / "recordings", tmp_path / "recordings.db", media, publish=published.append
    )
    try:
        assert recorder.wait_idle(5.0)  # nothing hangs on a worker that cannot work
        (alert,) = published
        assert (alert.kind, alert.call_id) == ("not_recorded", None)
        assert "recordings.db" in alert.detail
        recorder(started("c1"))
        recorder(ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
        recorder(ended("c1", T0 + 2))
        assert recorder.wait_idle(5.0)
    finally:
        recorder.close(5.0)
    assert media.started == []  # no tap whose audio would pile up unwritten
    assert [(a.kind, a.call_id) for a in published[1:]] == [("not_recorded", "c1")]


def test_a_write_failing_mid_call_keeps_what_was_written_and_alerts_once(
    make: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    import recorder.service as service
    from recorder.opus import LibopusWriter

    class DiskFills(LibopusWriter):
        """The disk fills after two seconds of audio."""

        def write(self, pcm: bytes) -> None:
            if self.frames >= 2 * RATE:
                self.broken = "No space left on device"
                raise OSError(f"{self.path}: {self.broken}")
            super().write(pcm)

    monkeypatch.setattr(service, "OggOpusWriter", DiskFills)
    h = make()
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
    h.feed("c1", stereo(tone(5, 440), tone(5, 880)))
    h.send(ended("c1", T0 + 6))
    h.idle()
    (alert,) = h.alerts()
    assert alert.kind == "write_failed" and "No space left" in alert.detail
    row = h.row("c1")
    assert row.incomplete and row.error is not None and "No space left" in row.error
    assert row.duration == 2.0  # what the encoder got before the failure
    assert h.recorder.stats.write_errors == 3 * 50  # every later block refused, not retried


# --- crash recovery --------------------------------------------------------------------------


CRASH = """
    import os, sys, time
    from pathlib import Path
    import numpy as np
    from softswitch.call import events as ev
    from softswitch.config import RecordingConfig
    from recorder.service import Recorder

    class Block:
        def __init__(self, pcm):
            self.pcm, self.frames, self.overflow = pcm, len(pcm) // 4, 0

    class Media:
        anchors = True
        def __init__(self):
            self.taps = {}
        def tap_start(self, name, leg_a, leg_b, *, heard=False):
            self.taps[name] = b""
        def tap_read(self, name):
            data, self.taps[name] = self.taps[name], b""
            return Block(data)
        def tap_stop(self, name):
            del self.taps[name]

    data = Path(sys.argv[1])
    media = Media()
    recorder = Recorder(RecordingConfig(min_free_mb=0), data / "recordings",
                        data / "recordings.db", media, publish=print)
    recorder(ev.CallStarted(1790000000.0, "c1", "s", "t", "0301111", "110"))
    recorder(ev.CallAnsweredByNode(1790000001.0, "c1", "c1-a"))
    recorder(ev.CallQueued(1790000002.0, "c1", "sales"))
    t = np.arange(160) / 8000
    block = np.stack([np.sin(2 * np.pi * 400 * t), np.sin(2 * np.pi * 700 * t)], 1)
    block = (block * 8000).astype(np.int16).tobytes()
    for _ in range(150):  # 3 s
        media.taps["c1-callrec"] += block
        recorder.tap_data("c1-callrec")
    assert recorder.wait_idle(10.0)
    os.kill(os.getpid(), 9)
"""


def test_a_recording_cut_by_a_crash_is_finished_from_its_file_on_restart(
    tmp_path: Path, make: Callable[..., Harness]
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert child.returncode == -9, child.stderr
    before = RecordingIndex(tmp_path / "recordings.db")
    try:
        (left,) = before.unfinished()
    finally:
        before.close()
    assert (left.id, left.ended, left.queue) == ("c1", None, "sales")
    path = tmp_path / "recordings" / left.path
    assert not ends_with_eos(path)
    pcm, channels, complete = read_ogg_opus(path)
    assert channels == 2 and not complete
    kept = len(pcm) / (4 * RATE)
    assert 1.9 <= kept <= 3.0  # the pages written before the kill

    h = make()  # the node starts again
    h.idle()
    row = h.row("c1")
    assert row.incomplete
    assert row.error == "the node stopped before the call ended"
    assert row.duration == pytest.approx(kept)
    assert row.ended == pytest.approx(T0 + 1 + kept)
    assert (row.policy, row.expires) == ("default", T0 + 1 + 365 * DAY)
    assert (row.sha256, row.bytes) == file_sha256(path)
    assert h.index.unfinished() == []
    frames, _ = h.decode(row)
    assert dominant_hz(frames[RATE // 2 :, 0].astype(float)) == pytest.approx(400, abs=3)
    assert dominant_hz(frames[RATE // 2 :, 1].astype(float)) == pytest.approx(700, abs=3)


def test_a_crashed_row_whose_file_is_gone_is_finished_empty(
    tmp_path: Path, make: Callable[..., Harness]
) -> None:
    index = RecordingIndex(tmp_path / "recordings.db")
    index.start("c1", kind="call", call_id="c1", path="2026/09/21/c1.opus", started=T0)
    index.close()
    h = make()
    h.idle()
    row = h.row("c1")
    assert (row.incomplete, row.duration, row.ended, row.sha256) == (True, 0.0, T0, "")
    assert row.error == "the node stopped before the call ended"


def test_audio_the_tap_dropped_is_counted_as_lost_in_the_index(
    make: Callable[..., Harness],
) -> None:
    h = make()
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
    h.feed("c1", stereo(tone(1, 300), tone(1, 500)))
    h.media.overflow["c1" + TAP_SUFFIX] = RATE // 2  # the ring was full for half a second
    h.feed("c1", stereo(tone(1, 300), tone(1, 500)))
    h.send(ended("c1", T0 + 3))
    h.idle()
    assert h.row("c1").lost_seconds == 0.5
    assert h.recorder.stats.lost_frames == RATE // 2


def test_an_encoder_far_behind_raises_one_alert_and_catches_up(
    make: Callable[..., Harness],
) -> None:
    h = make()
    worker = h.recorder._worker
    release = threading.Event()
    encode = worker._pcm

    def slow(*args: Any) -> None:
        release.wait(10.0)
        encode(*args)

    worker._pcm = slow  # type: ignore[method-assign]
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
    h.feed("c1", stereo(tone(12, 300), tone(12, 500)))  # 12 s at once, none encoded
    behind = [a for a in h.alerts() if a.kind == "encoder_behind"]
    assert len(behind) == 1 and behind[0].call_id is None
    assert h.recorder.stats.backlog > 10
    # Far behind (over 30 s a recording): a new call is not recorded, the one running goes on.
    h.feed("c1", stereo(tone(25, 300), tone(25, 500)))
    h.send(started("c2"), ev.CallAnsweredByNode(T0 + 2, "c2", "c2-a"))
    (refused,) = [a for a in h.alerts() if a.kind == "not_recorded"]
    assert refused.call_id == "c2" and "overloaded" in refused.detail
    assert "c2" + TAP_SUFFIX not in h.media.taps
    release.set()
    h.send(ended("c1", T0 + 5))
    h.idle()
    assert h.recorder.stats.queued == 0
    assert h.row("c1").duration == 37.0
    assert h.index.get("c2") is None


def test_close_finishes_every_open_recording_whole(make: Callable[..., Harness]) -> None:
    h = make()
    for call_id in ("c1", "c2"):
        h.send(started(call_id), ev.CallAnsweredByNode(T0 + 1, call_id, f"{call_id}-a"))
        h.feed(call_id, stereo(tone(2, 440), tone(2, 880)))
    h.recorder.close(10.0)
    for call_id in ("c1", "c2"):
        row = h.row(call_id)
        assert (row.incomplete, row.duration, row.ended) == (False, 2.0, T0 + 1000)
        assert ends_with_eos(h.directory / row.path)
    assert sorted(h.media.stopped) == [f"c1{TAP_SUFFIX}", f"c2{TAP_SUFFIX}"]


# --- voicemail -------------------------------------------------------------------------------


def write_wav(path: Path, seconds: float, rate: int = RATE) -> None:
    """A mono 16-bit WAV of a 500 Hz tone, as the IVR records a message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.sin(2 * np.pi * 500 * np.arange(round(seconds * rate)) / rate) * 8000
    soundfile.write(str(path), samples.astype(np.int16), rate, subtype="PCM_16")


def test_a_voicemail_becomes_an_opus_recording_and_the_list_is_pointed_at_it(
    tmp_path: Path, make: Callable[..., Harness]
) -> None:
    wav = tmp_path / "voicemail/200/c7.wav"
    write_wav(wav, 2.0)
    h = make()
    moved: list[tuple[str, str, str, str]] = []
    h.recorder.voicemail_moved = lambda *args: moved.append(args)
    h.send(ev.VoicemailLeft(T0 + 30, "c7", "200", "0301111", str(wav), 2.0))
    h.idle()
    row = h.row("c7-vm-200")
    assert (row.kind, row.call_id, row.mailbox, row.caller) == ("voicemail", "c7", "200", "0301111")
    assert (row.started, row.ended, row.duration) == (T0 + 28, T0 + 30, 2.0)
    assert (row.incomplete, row.error) == (False, None)
    assert row.path.endswith(".opus") and not Path(row.path).is_absolute()
    opus = h.directory / row.path
    assert moved == [("c7", "200", str(opus), str(wav))]
    assert wav.exists()  # removing it is the callback's part (after the list points away)
    frames, complete = h.decode(row)
    assert complete and frames.shape == (2 * RATE, 1)
    assert dominant_hz(frames[RATE // 2 :, 0].astype(float)) == pytest.approx(500, abs=2)
    assert row.qa is None  # no agent side to inspect


def test_without_a_callback_the_voicemail_wav_is_removed(
    tmp_path: Path, make: Callable[..., Harness]
) -> None:
    wav = tmp_path / "voicemail/200/c8.wav"
    write_wav(wav, 1.0)
    h = make()
    h.send(ev.VoicemailLeft(T0 + 30, "c8", "200", "0301111", str(wav), 1.0))
    h.idle()
    assert not wav.exists()
    assert (h.directory / h.row("c8-vm-200").path).exists()


def test_a_voicemail_that_cannot_be_encoded_is_indexed_as_the_wav_it_is(
    tmp_path: Path, make: Callable[..., Harness]
) -> None:
    wav = tmp_path / "voicemail/200/c9.wav"
    write_wav(wav, 1.0, rate=16000)  # not the recorder's 8 kHz
    h = make()
    moved: list[Any] = []
    h.recorder.voicemail_moved = lambda *args: moved.append(args)
    h.send(ev.VoicemailLeft(T0 + 30, "c9", "200", "0301111", str(wav), 1.0))
    h.idle()
    row = h.row("c9-vm-200")
    assert row.path == str(wav) and wav.exists() and moved == []
    assert row.error is not None and "kept as WAV" in row.error
    assert (row.sha256, row.bytes) == file_sha256(wav)
    assert not any(h.directory.rglob("*.opus"))


# --- quality inspection ---------------------------------------------------------------------


def test_qa_flags_of_a_call_with_a_long_silence_land_in_the_index(
    make: Callable[..., Harness],
) -> None:
    h = make(RecordingConfig(min_free_mb=0, qa=RecordingQa(silence_seconds=3.0)))
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
    h.feed("c1", stereo(np.zeros(6 * RATE), tone(6, 600)))  # IVR prompt, caller silent
    h.send(*agent_leg("c1", T0 + 7, "1001", "c1-b"))
    caller = np.concatenate([tone(1, 440), np.zeros(5 * RATE), tone(1, 440)])
    agent = np.concatenate([np.zeros(RATE), tone(1, 700), np.zeros(5 * RATE)])
    h.feed("c1", stereo(caller, agent))  # 1 s each, then 4 s of dead air, then the caller
    h.send(ended("c1", T0 + 14))
    h.idle()
    row = h.row("c1")
    assert row.qa is not None
    assert "long_silence" in row.qa_flags
    assert row.qa["duration"] == pytest.approx(7.0, abs=0.05)  # from the agent's answer on
    ((start, end),) = row.qa["long_silences"]
    assert start == pytest.approx(2.2, abs=0.1) and end == pytest.approx(6.0, abs=0.1)
    flagged = h.index.search(SearchFilter(flag="long_silence"), Viewer.parse("agent:1001"))
    assert [r.id for r in flagged] == ["c1"]


def test_a_call_no_agent_took_part_in_gets_no_qa(make: Callable[..., Harness]) -> None:
    h = make(RecordingConfig(min_free_mb=0, qa=RecordingQa(silence_seconds=1.0)))
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
    h.feed("c1", stereo(np.concatenate([tone(1, 440), np.zeros(4 * RATE)]), np.zeros(5 * RATE)))
    h.send(ended("c1", T0 + 6))
    h.idle()
    row = h.row("c1")
    assert row.duration == 5.0 and row.qa is None and row.qa_flags == ()


def test_qa_disabled_leaves_the_row_without_qa(make: Callable[..., Harness]) -> None:
    h = make(RecordingConfig(min_free_mb=0, qa=RecordingQa(enabled=False, silence_seconds=1.0)))
    h.send(started("c1"), ev.CallAnsweredByNode(T0 + 1, "c1", "c1-a"))
    h.send(*agent_leg("c1", T0 + 1, "1001", "c1-b"))
    h.feed("c1", stereo(np.concatenate([tone(1, 440), np.zeros(4 * RATE)]), np.zeros(5 * RATE)))
    h.send(ended("c1", T0 + 6))
    h.idle()
    assert h.row("c1").qa is None
