"""`hotline recordings …` (REC-2, REC-3): search and show through the viewer's rights, export
and play checked against the index's SHA-256, admin-only deletion and legal hold, retention
and backup by hand, each problem one line on stderr with exit status 1 or 2."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from recorder.backup import file_sha256
from recorder.cli import parse_time
from recorder.index import RecordingIndex
from recorder.opus import RATE, OggOpusWriter
from softswitch.cli import main

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 2.0
PAST = 1_000.0  # an expiry long gone


def local(*fields: int) -> float:
    return dt.datetime(*fields).timestamp()  # type: ignore[arg-type]


def stereo_sine(seconds: float, hz: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    caller = (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    return np.stack([caller, caller // 2], axis=1).tobytes()


PCM = stereo_sine(SECONDS, 440.0)
#: id, day of December 2026 (started at 9 + day o'clock), agents, caller, queue, audio expiry
RECORDINGS = [
    ("r1", 1, ["1001"], "0101", "general", None),
    ("r2", 2, ["1002"], "0202", "complaints", PAST),
    ("r3", 3, ["1002", "1001"], "0303", "general", None),
    ("r4", 4, [], "0404", None, PAST),  # voicemail
]


class Site:
    """A data directory with an index of four recordings and their Ogg Opus files, and the
    shipped configuration without its node.yaml (defaults: recordings under DATA/recordings,
    no backup target)."""

    def __init__(self, root: Path) -> None:
        self.data = root / "var"
        self.audio = self.data / "recordings"
        self.config = root / "config"

    def build(self) -> None:
        shutil.copytree(ROOT / "config", self.config, ignore=shutil.ignore_patterns("node.yaml"))
        self.audio.mkdir(parents=True)
        index = RecordingIndex(self.data / "recordings.db", self.audio)
        try:
            for recording_id, day, agents, caller, queue, expires in RECORDINGS:
                started = local(2026, 12, day, 9 + day, 0)
                self.add(index, recording_id, started, agents, caller, queue, expires)
        finally:
            index.close()

    def add(
        self,
        index: RecordingIndex,
        recording_id: str,
        started: float,
        agents: list[str],
        caller: str,
        queue: str | None,
        expires: float | None,
    ) -> None:
        rel = f"{dt.datetime.fromtimestamp(started):%Y/%m/%d}/{recording_id}.opus"
        path = self.audio / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = OggOpusWriter(path)
        writer.write(PCM)
        writer.close()
        index.start(
            recording_id,
            kind="call" if agents else "voicemail",
            call_id=f"c-{recording_id}",
            path=rel,
            started=started,
            caller=caller,
            called="12345",
            queue=queue,
            customer_id=f"cust-{recording_id}",
        )
        for n, agent in enumerate(agents):
            index.segment_start(recording_id, agent, f"{recording_id}-leg{n}", 0.5 * n)
        sha256, size = file_sha256(path)
        index.finish(
            recording_id,
            ended=started + SECONDS,
            duration=SECONDS,
            size=size,
            sha256=sha256,
            incomplete=False,
            policy="default",
            expires=expires if expires is not None else started + 365 * 86400,
        )

    def path(self, recording_id: str) -> Path:
        return next(self.audio.rglob(f"{recording_id}.opus"))

    def index(self) -> RecordingIndex:
        return RecordingIndex(self.data / "recordings.db", self.audio)

    def audit(self, recording_id: str) -> list[tuple[str, str]]:
        index = self.index()
        try:
            return [(a["user"], a["action"]) for a in index.audit_log(recording_id)][::-1]
        finally:
            index.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once (encoding is most of the cost); each test gets its own copy."""
    root = tmp_path_factory.mktemp("site")
    Site(root).build()
    return root


@pytest.fixture
def site(template: Path, tmp_path: Path) -> Site:
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    return Site(tmp_path)


def run(capsys: pytest.CaptureFixture[str], site: Site, *argv: str) -> tuple[int, str, str]:
    """`hotline recordings ARGV --data … [--config …]` and what it printed."""
    extra = ["--data", str(site.data)]
    if argv[0] in ("export", "play", "delete", "retention", "backup"):
        extra += ["--config", str(site.config)]
    status = main(["recordings", *argv, *extra])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def listed_ids(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[1:]]


# --- search -----------------------------------------------------------------------------------
def test_agent_finds_only_calls_it_took_part_in(capsys: Any, site: Site) -> None:
    status, out, err = run(capsys, site, "search", "--as", "agent:1001")
    assert (status, err) == (0, "")
    header = "id start duration caller called queue agents customer flags state"
    assert out.splitlines()[0].split() == header.split()
    assert listed_ids(out) == ["r3", "r1"]  # newest first
    r3 = out.splitlines()[1].split()
    assert r3 == "r3 2026-12-03 12:00:00 0:00:02 0303 12345 general 1002,1001 cust-r3 - -".split()
    status, out, _ = run(capsys, site, "search", "--as", "agent:1001", "--agent", "1002")
    assert listed_ids(out) == ["r3"]  # another agent's filter never widens the view


def test_supervisor_finds_everything_and_filters_combine(capsys: Any, site: Site) -> None:
    assert listed_ids(run(capsys, site, "search", "--as", "supervisor:ann")[1]) == [
        "r4",
        "r3",
        "r2",
        "r1",
    ]
    _, out, _ = run(capsys, site, "search", "--as", "supervisor:ann", "--queue", "general")
    assert listed_ids(out) == ["r3", "r1"]
    _, out, _ = run(capsys, site, "search", "--as", "supervisor:ann", "--caller", "0202")
    assert listed_ids(out) == ["r2"]
    _, out, _ = run(capsys, site, "search", "--as", "supervisor:ann", "--kind", "voicemail")
    assert listed_ids(out) == ["r4"]
    _, out, _ = run(capsys, site, "search", "--as", "supervisor:ann", "--customer", "cust-r1")
    assert listed_ids(out) == ["r1"]


def test_time_range_takes_local_dates_times_and_epoch_seconds(capsys: Any, site: Site) -> None:
    def ids(*times: str) -> list[str]:
        return listed_ids(run(capsys, site, "search", "--as", "admin:root", *times)[1])

    assert ids("--from", "2026-12-02", "--to", "2026-12-03") == ["r3", "r2"]  # the 3rd whole
    assert ids("--from", "2026-12-02 11:00:01") == ["r4", "r3"]
    assert ids("--to", "2026-12-02 11:00") == ["r1"]  # before, not at
    assert ids("--from", str(int(local(2026, 12, 4, 0, 0)))) == ["r4"]
    assert parse_time("2026-12-07", "--to", end_of_day=True) == local(2026, 12, 8, 0, 0)
    assert parse_time("1780000000.5", "--from") == 1780000000.5


def test_json_lists_whole_records(capsys: Any, site: Site) -> None:
    status, out, _ = run(capsys, site, "search", "--as", "agent:1002", "--json")
    records = json.loads(out)
    assert status == 0
    assert [r["id"] for r in records] == ["r3", "r2"]
    assert records[1]["sha256"] == file_sha256(site.path("r2"))[0]
    assert [s["agent_id"] for s in records[0]["segments"]] == ["1002", "1001"]


def test_flags_state_and_deleted_filter_show_in_the_table(capsys: Any, site: Site) -> None:
    index = site.index()
    index.set_qa("r1", json.dumps({"flags": ["overtalk"]}), ["overtalk"])
    index.set_hold("r1", True, "court order 7")
    index.mark_deleted("r2", at=local(2026, 12, 5, 9, 0), by="admin:root", policy="manual")
    index.close()
    _, out, _ = run(capsys, site, "search", "--as", "admin:root", "--flag", "overtalk")
    assert out.splitlines()[1].split()[-2:] == ["overtalk", "held"]
    _, out, _ = run(capsys, site, "search", "--as", "admin:root")
    assert "r2" not in listed_ids(out)  # gone audio is not listed unless asked for
    _, out, _ = run(capsys, site, "search", "--as", "admin:root", "--deleted")
    assert listed_ids(out) == ["r2"]
    assert out.splitlines()[1].split()[-1] == "deleted"


def test_no_index_yet_means_no_recordings_and_creates_none(capsys: Any, tmp_path: Path) -> None:
    data = tmp_path / "var"
    status = main(["recordings", "search", "--as", "agent:1001", "--data", str(data)])
    assert (status, capsys.readouterr().out) == (0, "no recordings\n")
    status = main(["recordings", "show", "r1", "--as", "admin:root", "--data", str(data)])
    assert (status, capsys.readouterr().err) == (
        1,
        "hotline: no recording 'r1' visible to admin:root\n",
    )
    assert not data.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "--as", "boss:1"], "hotline: --as: expected agent:ID, supervisor:NAME or"),
        (["search", "--as", "agent:"], "hotline: --as: expected agent:ID"),
        (
            ["search", "--as", "agent:1001", "--from", "yesterday"],
            "hotline: --from 'yesterday': expected YYYY-MM-DD",
        ),
        (["search", "--as", "agent:1001", "--to", "2026-13-01"], "hotline: --to '2026-13-01'"),
        (["search", "--as", "agent:1001", "--limit", "0"], "hotline: --limit 0: expected 1 to"),
        (["show", "r1", "--as", "root"], "hotline: --as: expected"),
    ],
)
def test_a_wrong_command_line_is_one_line_and_status_2(
    capsys: Any, site: Site, argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, site, *argv)
    assert (status, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1


def test_a_broken_index_is_one_line_and_status_1(capsys: Any, tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    (data / "recordings.db").write_bytes(b"this is no SQLite database " * 100)
    status = main(["recordings", "search", "--as", "agent:1001", "--data", str(data)])
    err = capsys.readouterr().err
    assert status == 1
    assert err == f"hotline: {data / 'recordings.db'}: file is not a database\n"


# --- show -------------------------------------------------------------------------------------
def test_show_gives_every_field_segments_qa_backups_and_audit(capsys: Any, site: Site) -> None:
    index = site.index()
    qa = {
        "duration": 2.0,
        "caller_talk": 1.5,
        "agent_talk": 0.5,
        "agent_talk_ratio": 0.25,
        "overtalk_seconds": 0.75,
        "overtalk_count": 1,
        "long_silences": [[0.25, 1.75]],
        "flags": ["overtalk", "long_silence"],
        "transcript": None,
    }
    index.set_qa("r3", json.dumps(qa), qa["flags"])  # type: ignore[arg-type]
    index.backup_done("r3", "dir:/backup", "/backup/2026/12/03/r3.opus", local(2026, 12, 3, 13, 0))
    index.backup_failed("r3", "sftp://b@h:22/rec", "timed out", local(2026, 12, 3, 13, 1))
    index.audit(
        at=local(2026, 12, 3, 14, 0), user="supervisor:ann", action="play", recording_id="r3"
    )
    index.close()
    status, out, _ = run(capsys, site, "show", "r3", "--as", "agent:1001")
    assert status == 0
    lines = out.splitlines()
    assert "recording:     r3" in lines
    assert "started:       2026-12-03 12:00:00" in lines
    assert "queue:         general" in lines
    assert "customer id:   cust-r3" in lines
    assert f"sha256:        {file_sha256(site.path('r3'))[0]}" in lines
    assert "legal hold:    no" in lines
    assert "  agent 1002  leg r3-leg0  0:00:00 - 0:00:02" in lines
    assert "  agent 1001  leg r3-leg1  0:00:00 - 0:00:02" in lines  # 0.5 s rounds to 0
    assert "  caller talk 1.5 s, agent talk 0.5 s, agent share 25%" in lines
    assert "  over-talk 1 times, 0.8 s" in lines
    assert "  long silences 1, 0.2-1.8 s" in lines
    assert "  flags overtalk, long_silence" in lines
    assert "  2026-12-03 13:00:00  dir:/backup  copied to /backup/2026/12/03/r3.opus" in lines
    assert "  2026-12-03 13:01:00  sftp://b@h:22/rec  failed: timed out" in lines
    # Who played it is for supervisors and admins: the agent's view has no audit trail.
    assert "  2026-12-03 14:00:00  supervisor:ann  play" not in lines
    assert "audit: -" in lines
    status, out, _ = run(capsys, site, "show", "r3", "--as", "supervisor:bo")
    assert status == 0
    assert "  2026-12-03 14:00:00  supervisor:ann  play" in out.splitlines()


def test_show_json_holds_recording_backups_and_audit(capsys: Any, site: Site) -> None:
    status, out, _ = run(capsys, site, "show", "r1", "--as", "admin:root", "--json")
    shown = json.loads(out)
    assert status == 0
    assert (shown["recording"]["id"], shown["backups"], shown["audit"]) == ("r1", [], [])


def test_another_agents_call_reads_as_no_such_recording(capsys: Any, site: Site) -> None:
    status, out, err = run(capsys, site, "show", "r2", "--as", "agent:1001")
    assert (status, out) == (1, "")
    assert err == "hotline: no recording 'r2' visible to agent:1001\n"
    _, _, missing = run(capsys, site, "show", "r9", "--as", "agent:1001")
    assert missing == err.replace("r2", "r9")  # nothing tells the two apart
    assert run(capsys, site, "show", "r2", "--as", "supervisor:ann")[0] == 0


# --- export -----------------------------------------------------------------------------------
def test_export_opus_is_the_recorded_file_and_is_audited(
    capsys: Any, site: Site, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "r1.opus"
    target.parent.mkdir()
    status, out, err = run(capsys, site, "export", "r1", str(target), "--as", "agent:1001")
    assert (status, err) == (0, "")
    assert out.startswith(f"exported r1 to {target}")
    assert target.read_bytes() == site.path("r1").read_bytes()
    assert list(target.parent.iterdir()) == [target]  # no .part left behind
    assert site.audit("r1") == [("agent:1001", "export")]


def test_export_refuses_a_file_that_no_longer_matches_the_index(
    capsys: Any, site: Site, tmp_path: Path
) -> None:
    source = site.path("r1")
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    source.write_bytes(bytes(data))
    for name in ("r1.ogg", "r1.wav"):
        status, out, err = run(
            capsys, site, "export", "r1", str(tmp_path / name), "--as", "admin:root"
        )
        assert (status, out) == (1, "")
        assert err.startswith(f"hotline: r1: {source} does not match the index (sha256 ")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("r1", ".r1"))]
    assert site.audit("r1") == []


def test_export_wav_decodes_to_16_bit_8_khz_of_the_whole_call(
    capsys: Any, site: Site, tmp_path: Path
) -> None:
    target = tmp_path / "r2.wav"
    status, out, _ = run(capsys, site, "export", "r2", str(target), "--as", "supervisor:ann")
    assert status == 0
    info = soundfile.info(str(target))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 8000, 2)
    assert info.frames == int(SECONDS * RATE)
    left = soundfile.read(str(target), dtype="int16")[0][:, 0]
    assert np.abs(left).max() > 4000  # the sine, not silence
    assert out == f"exported r2 to {target} (2.0 s, 2 channel(s))\n"
    assert site.audit("r2") == [("supervisor:ann", "export")]


def test_export_of_another_agents_call_writes_nothing(
    capsys: Any, site: Site, tmp_path: Path
) -> None:
    target = tmp_path / "r2.opus"
    status, _, err = run(capsys, site, "export", "r2", str(target), "--as", "agent:1001")
    assert (status, err) == (1, "hotline: no recording 'r2' visible to agent:1001\n")
    assert not target.exists()
    assert site.audit("r2") == []


def test_export_of_deleted_audio_says_so(capsys: Any, site: Site, tmp_path: Path) -> None:
    assert run(capsys, site, "delete", "r1", "--as", "admin:root", "--reason", "asked")[0] == 0
    status, _, err = run(
        capsys, site, "export", "r1", str(tmp_path / "r1.wav"), "--as", "admin:root"
    )
    assert status == 1
    assert err.startswith("hotline: r1: the audio was deleted on ")
    assert "by admin:root (policy manual)" in err


def test_export_needs_a_known_file_type(capsys: Any, site: Site, tmp_path: Path) -> None:
    status, _, err = run(capsys, site, "export", "r1", str(tmp_path / "r1.mp3"), "--as", "admin:x")
    assert status == 2
    assert "FILE must end in .opus or .ogg (as recorded) or .wav" in err


def test_an_invalid_configuration_is_status_2(capsys: Any, site: Site, tmp_path: Path) -> None:
    (site.config / "node.yaml").write_text("recording:\n  colour: red\n")
    status, _, err = run(capsys, site, "export", "r1", str(tmp_path / "r1.wav"), "--as", "admin:x")
    assert status == 2
    assert err == "node.yaml:2: recording.colour: unknown field `colour`\n"


# --- play -------------------------------------------------------------------------------------
def test_play_without_sounddevice_says_how_to_get_it(
    capsys: Any, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    status, out, err = run(capsys, site, "play", "r1", "--as", "agent:1001")
    assert (status, out) == (1, "")
    assert err == (
        "hotline: sounddevice is not installed (pip install sounddevice; needs libportaudio2)\n"
    )
    assert site.audit("r1") == []


class FakeSoundDevice(types.ModuleType):
    """What `play` uses of sounddevice; `outputs` False: no default output device."""

    class PortAudioError(Exception):
        pass

    def __init__(self, outputs: bool) -> None:
        super().__init__("sounddevice")
        self.outputs = outputs
        self.played: list[tuple[Any, int]] = []
        self.waited = False

    def query_devices(self, kind: str) -> dict[str, Any]:
        if not self.outputs:
            raise self.PortAudioError("Error querying device -1")
        return {"name": "speakers"}

    def play(self, frames: Any, samplerate: int) -> None:
        self.played.append((frames, samplerate))

    def wait(self) -> None:
        self.waited = True


@pytest.fixture
def sounddevice(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSoundDevice]:
    fake = FakeSoundDevice(outputs=True)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    yield fake


def test_play_without_an_output_device_points_to_export(
    capsys: Any, site: Site, sounddevice: FakeSoundDevice
) -> None:
    sounddevice.outputs = False
    status, _, err = run(capsys, site, "play", "r1", "--as", "agent:1001")
    assert (status, sounddevice.played) == (1, [])
    assert err == (
        "hotline: no audio output device here: export it with "
        "`hotline recordings export r1 file.wav`\n"
    )
    assert site.audit("r1") == []


def test_play_decodes_both_channels_and_is_audited(
    capsys: Any, site: Site, sounddevice: FakeSoundDevice
) -> None:
    status, out, _ = run(capsys, site, "play", "r3", "--as", "agent:1001")
    assert status == 0
    [(frames, rate)] = sounddevice.played
    assert (frames.shape, frames.dtype, rate, sounddevice.waited) == (
        (16000, 2),
        np.int16,
        8000,
        True,
    )
    assert out.startswith("playing r3 (0:00:02, caller left, agent right)")
    assert site.audit("r3") == [("agent:1001", "play")]
    assert run(capsys, site, "play", "r2", "--as", "agent:1001")[0] == 1
    assert len(sounddevice.played) == 1


# --- delete and legal hold --------------------------------------------------------------------
def test_only_an_admin_deletes(capsys: Any, site: Site) -> None:
    for who in ("supervisor:ann", "agent:1001"):
        status, _, err = run(capsys, site, "delete", "r1", "--as", who, "--reason", "x")
        assert status == 1
        assert err == f"hotline: {who.replace(':', ' ')} may not delete recordings\n"
    assert site.path("r1").exists()
    assert site.audit("r1") == []


def test_delete_removes_the_file_keeps_the_row_and_audits(capsys: Any, site: Site) -> None:
    path = site.path("r1")
    status, out, _ = run(
        capsys, site, "delete", "r1", "--as", "admin:root", "--reason", "GDPR request 12"
    )
    assert status == 0
    assert out.startswith(f"deleted the audio of r1 ({path})")
    assert not path.exists() and not path.parent.exists()  # the emptied day directory too
    index = site.index()
    row = index.get("r1")
    log = index.audit_log("r1")
    index.close()
    assert row is not None and row.deleted is not None
    assert (row.deleted_by, row.deleted_policy) == ("admin:root", "manual")
    assert [(a["user"], a["action"], a["detail"]) for a in log] == [
        ("admin:root", "delete", "GDPR request 12")
    ]
    status, _, err = run(capsys, site, "delete", "r1", "--as", "admin:root", "--reason", "again")
    assert status == 1 and err.startswith("hotline: r1 was already deleted on ")


def test_a_held_recording_cannot_be_deleted_until_the_hold_is_lifted(
    capsys: Any, site: Site
) -> None:
    status, _, err = run(capsys, site, "hold", "r2", "--as", "supervisor:ann", "--reason", "x")
    assert (status, err) == (1, "hotline: supervisor ann may not set legal holds\n")
    status, out, _ = run(capsys, site, "hold", "r2", "--as", "admin:root", "--reason", "case 4")
    assert (status, out) == (0, "r2: legal hold set\n")
    status, _, err = run(capsys, site, "delete", "r2", "--as", "admin:root", "--reason", "x")
    assert status == 1
    assert err == "hotline: r2 is under legal hold (case 4); lift the hold first\n"
    assert site.path("r2").exists()
    assert run(capsys, site, "unhold", "r2", "--as", "admin:root")[0] == 0
    assert run(capsys, site, "delete", "r2", "--as", "admin:root", "--reason", "x")[0] == 0
    assert site.audit("r2") == [
        ("admin:root", "hold"),
        ("admin:root", "unhold"),
        ("admin:root", "delete"),
    ]
    status, _, err = run(capsys, site, "hold", "r9", "--as", "admin:root", "--reason", "x")
    assert (status, err) == (1, "hotline: no recording 'r9' visible to admin:root\n")


# --- retention and backup ---------------------------------------------------------------------
def test_retention_dry_run_lists_and_deletes_nothing(capsys: Any, site: Site) -> None:
    status, out, _ = run(capsys, site, "retention", "--dry-run")
    assert status == 0
    size = site.path("r2").stat().st_size + site.path("r4").stat().st_size
    summary, ids = out.splitlines()
    assert summary == (
        f"dry run: 2 recordings would be deleted ({size} bytes), call records of 0 would be "
        "forgotten"
    )
    assert ids in ("would be deleted: r2 r4", "would be deleted: r4 r2")  # equal expiry
    assert site.path("r2").exists() and site.path("r4").exists()
    assert site.audit("r2") == site.audit("r4") == []
    _, out, _ = run(capsys, site, "search", "--as", "admin:root")
    assert listed_ids(out) == ["r4", "r3", "r2", "r1"]


def test_retention_deletes_expired_audio_only(capsys: Any, site: Site) -> None:
    status, out, _ = run(capsys, site, "retention")
    summary, ids = out.splitlines()
    assert status == 0
    assert summary.startswith("2 recordings deleted (")
    assert ids in ("deleted: r2 r4", "deleted: r4 r2")
    assert sorted(p.stem for p in site.audio.rglob("*.opus")) == ["r1", "r3"]
    assert site.audit("r2") == [("retention", "delete")]


def test_backup_copies_to_the_configured_target(capsys: Any, site: Site, tmp_path: Path) -> None:
    status, _, err = run(capsys, site, "backup")
    assert status == 1
    assert err == "hotline: no backup target: set recording.backup.target in node.yaml\n"
    target = tmp_path / "backup"
    target.mkdir()
    (site.config / "node.yaml").write_text(f"recording:\n  backup:\n    target: dir:{target}\n")
    site.path("r3").write_bytes(b"changed since it was recorded")
    sent = sum(site.path(r).stat().st_size for r in ("r1", "r2", "r4"))
    status, out, err = run(capsys, site, "backup")
    assert (status, out) == (1, f"backup: 3 sent ({sent} bytes), 1 failed\n")
    assert err.startswith("hotline: r3: local file ") and "no longer matches the index" in err
    assert (target / "2026/12/01/r1.opus").read_bytes() == site.path("r1").read_bytes()
    assert not (target / "2026/12/03/r3.opus").exists()
