"""`hotline recordings …`: search, show, export, play, delete and legal hold of recordings,
and the retention and backup passes by hand (SPEC REC-2, REC-3).

Every command on recordings says who asks (`--as agent:1001`, `supervisor:NAME` or
`admin:NAME`) and the index enforces what that viewer may see: an agent finds, shows, exports
and plays only the calls it took part in, and a recording it may not see reads exactly as one
that does not exist, so ids cannot be probed. Export and play write an audit row; deletion and
legal holds are an admin's and `recorder.retention` logs them.

The index is `DATA/recordings.db`, read where it is and never created here; the audio is under
`recording.directory` of the configuration (`--config`), as the node finds it.

Exit status: 0 done; 1 refused or failed at run time (no such recording, a checksum that no
longer matches, no audio device, a broken index); 2 the command line or the configuration is
wrong. Each problem is one line on stderr, `hotline: …` (an invalid configuration: one line
per problem, as `hotline check` prints them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TextIO

import msgspec

from recorder.backup import BackupError, BackupItem, DirectoryTarget, file_sha256
from recorder.index import AccessDeniedError, Recording, RecordingIndex, SearchFilter, Viewer
from recorder.jobs import INDEX_NAME, backup_pass, retention_pass
from recorder.retention import RetentionReport, delete_recording, set_hold
from softswitch.config import RecordingConfig, load_config
from softswitch.errors import ConfigError

_TIME_HELP = "YYYY-MM-DD, 'YYYY-MM-DD HH:MM[:SS]' (local time) or epoch seconds"
_EPOCH = re.compile(r"\d+(\.\d*)?")
_NO_SOUNDDEVICE = "sounddevice is not installed (pip install sounddevice; needs libportaudio2)"


class CliError(Exception):
    """A refusal, printed as one line; `status` 2: the command line is wrong, 1: the rest."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# --- the command line -----------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `recordings` command and its actions, on `hotline`'s subparsers."""
    recordings = sub.add_parser(
        "recordings",
        help="call recordings: search, show, export, play, delete, legal hold; retention "
        "and backup by hand (DATA/recordings.db)",
        description="--as says who asks: agent:ID sees only the calls it took part in, "
        "supervisor:NAME sees all, admin:NAME also deletes and sets legal holds. Export and "
        "play are logged in the recording's audit trail.",
    )
    actions = recordings.add_subparsers(dest="action", required=True)
    search = actions.add_parser("search", help="recordings matching every option given")
    search.add_argument(
        "--from", dest="start_from", metavar="T", help=f"started at or after T: {_TIME_HELP}"
    )
    search.add_argument(
        "--to",
        dest="start_to",
        metavar="T",
        help="started before T (a date alone: up to the end of that day)",
    )
    search.add_argument("--agent", metavar="ID", help="an agent took part")
    search.add_argument("--caller", metavar="N", help="calling number")
    search.add_argument("--called", metavar="N", help="called (public) number")
    search.add_argument("--queue", metavar="Q")
    search.add_argument("--service", metavar="S", help="service type of the call")
    search.add_argument("--customer", metavar="C", help="customer id of the call")
    search.add_argument("--flag", metavar="F", help="quality inspection flag, e.g. overtalk")
    search.add_argument("--incomplete", action="store_true", help="only incomplete ones")
    search.add_argument("--deleted", action="store_true", help="only those whose audio is gone")
    search.add_argument("--kind", choices=("call", "voicemail"))
    search.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (100)")
    search.add_argument("--json", action="store_true", help="a JSON list of the records")
    show = actions.add_parser("show", help="everything about one recording, and its audit")
    show.add_argument("--json", action="store_true", help="as one JSON object")
    export = actions.add_parser(
        "export", help="FILE.opus/.ogg: the file as recorded (checked); FILE.wav: decoded"
    )
    play = actions.add_parser("play", help="listen (needs sounddevice and an audio output)")
    delete = actions.add_parser("delete", help="delete the audio now (admin; logged)")
    hold = actions.add_parser("hold", help="legal hold: kept whatever retention says (admin)")
    unhold = actions.add_parser("unhold", help="lift a legal hold (admin)")
    for action in (show, export, play, delete, hold, unhold):
        action.add_argument("id", metavar="ID", help="recording id")
    export.add_argument("file", metavar="FILE")
    for action in (delete, hold):
        action.add_argument("--reason", required=True, help="why (kept in the audit log)")
    unhold.add_argument("--reason", default="", help="why (kept in the audit log)")
    retention = actions.add_parser(
        "retention", help="one retention pass now: delete expired audio, forget old records"
    )
    retention.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    backup = actions.add_parser("backup", help="one backup pass now to recording.backup.target")
    for action in (search, show, export, play, delete, hold, unhold):
        action.add_argument(
            "--as",
            dest="viewer",
            required=True,
            metavar="ROLE:NAME",
            help="agent:ID, supervisor:NAME or admin:NAME",
        )
    for action in (search, show, export, play, delete, hold, unhold, retention, backup):
        action.add_argument("--data", default="var", help="data directory (default: var)")
    for action in (export, play, delete, retention, backup):
        action.add_argument("--config", default="config", help="configuration directory")


def recordings_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`hotline recordings ACTION`: the exit status (see the module docstring)."""
    stream = out if out is not None else sys.stdout
    try:
        return _ACTIONS[args.action](args, stream)
    except CliError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return exc.status
    except ConfigError as exc:
        for issue in exc.errors:
            print(issue, file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"hotline: {Path(args.data) / INDEX_NAME}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1


def parse_time(text: str, option: str, *, end_of_day: bool = False) -> float:
    """Epoch seconds of `text`: epoch seconds, an ISO date or date and time (local time
    unless it has an offset). A date alone is its midnight, or with `end_of_day` the next
    midnight (so `--to 2026-12-07` takes in the 7th)."""
    if _EPOCH.fullmatch(text):
        return float(text)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        pass
    else:
        midnight = dt.datetime.combine(day, dt.time())
        return (midnight + dt.timedelta(days=1 if end_of_day else 0)).timestamp()
    try:
        return dt.datetime.fromisoformat(text).timestamp()  # naive: this machine's local time
    except ValueError:
        raise CliError(f"{option} {text!r}: expected {_TIME_HELP}", 2) from None


def _viewer(args: argparse.Namespace) -> Viewer:
    try:
        return Viewer.parse(args.viewer)
    except ValueError as exc:
        raise CliError(f"--as: {exc}", 2) from None


def _who(viewer: Viewer) -> str:
    return f"{viewer.role}:{viewer.name}"


def _open_index(args: argparse.Namespace, directory: Path | None = None) -> RecordingIndex | None:
    """The index in `--data`, or None where there is none yet (none is created)."""
    path = Path(args.data) / INDEX_NAME
    return RecordingIndex(path, directory) if path.exists() else None


def _settings(args: argparse.Namespace) -> tuple[Path, RecordingConfig]:
    """The recordings directory and `recording` settings of `--config` (ConfigError)."""
    from softswitch.node import recordings_directory  # late: it loads the whole node

    settings = load_config(args.config).recording
    return recordings_directory(Path(args.data), settings.directory), settings


def _not_found(recording_id: str, viewer: Viewer) -> CliError:
    """One message for a recording that does not exist and one the viewer may not see."""
    return CliError(f"no recording {recording_id!r} visible to {_who(viewer)}")


@contextmanager
def _visible(
    args: argparse.Namespace, viewer: Viewer, directory: Path | None = None
) -> Iterator[tuple[RecordingIndex, Recording]]:
    """The open index and recording `args.id`, if `viewer` may see it."""
    index = _open_index(args, directory)
    if index is None:
        raise _not_found(args.id, viewer)
    with closing(index):
        recording = index.get(args.id, viewer)
        if recording is None:
            raise _not_found(args.id, viewer)
        yield index, recording


def _checked_audio(index: RecordingIndex, recording: Recording) -> Path:
    """The recording's file, once its SHA-256 and size are those the index holds."""
    if recording.deleted is not None:
        raise CliError(
            f"{recording.id}: the audio was deleted on {_local(recording.deleted)} by "
            f"{recording.deleted_by} (policy {recording.deleted_policy}); only its record is kept"
        )
    if not recording.sha256:
        raise CliError(f"{recording.id}: still being recorded (no checksum yet); try after it ends")
    path = index.directory / recording.path
    try:
        sha256, size = file_sha256(path)
    except FileNotFoundError:
        raise CliError(f"{recording.id}: file {path} is missing") from None
    if sha256 != recording.sha256 or size != recording.bytes:
        raise CliError(
            f"{recording.id}: {path} does not match the index (sha256 {sha256[:16]}…, {size} "
            f"bytes; index {recording.sha256[:16]}…, {recording.bytes} bytes): not used"
        )
    return path


# --- reading --------------------------------------------------------------------------------
def search_command(args: argparse.Namespace, out: TextIO) -> int:
    viewer = _viewer(args)
    query = SearchFilter(
        start_from=None if args.start_from is None else parse_time(args.start_from, "--from"),
        start_to=None
        if args.start_to is None
        else parse_time(args.start_to, "--to", end_of_day=True),
        agent=args.agent,
        caller=args.caller,
        called=args.called,
        queue=args.queue,
        service_type=args.service,
        customer_id=args.customer,
        kind=args.kind,
        flag=args.flag,
        incomplete=True if args.incomplete else None,
        deleted=bool(args.deleted),
        limit=args.limit,
    )
    if not 1 <= query.limit <= 100_000:
        raise CliError(f"--limit {query.limit}: expected 1 to 100000", 2)
    found: list[Recording] = []
    index = _open_index(args)
    if index is not None:
        with closing(index):
            found = index.search(query, viewer)
    if args.json:
        out.write(_json(found))
    elif found:
        print(format_table(found), file=out)
    else:
        print("no recordings", file=out)
    return 0


def show_command(args: argparse.Namespace, out: TextIO) -> int:
    viewer = _viewer(args)
    with _visible(args, viewer) as (index, recording):
        backups = index.backups(recording.id)
        # Who played, exported or deleted a call is for supervisors and admins to see.
        audit = index.audit_log(recording.id)[::-1] if viewer.role != "agent" else []
    if args.json:
        out.write(_json({"recording": recording, "backups": backups, "audit": audit}))
    else:
        print(format_details(recording, backups, audit), file=out)
    return 0


def _json(value: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n"


def format_table(recordings: Sequence[Recording]) -> str:
    """One line per recording, local times, for a terminal."""
    header = ("id", "start", "duration", "caller", "called", "queue", "agents", "customer")
    lines = [(*header, "flags", "state")]
    for r in recordings:
        lines.append(
            (
                r.id,
                _local(r.started),
                _duration(r.duration),
                r.caller or "-",
                r.called or "-",
                r.queue or "-",
                ",".join(r.agents) or "-",
                r.customer_id or "-",
                ",".join(r.qa_flags) or "-",
                _state(r),
            )
        )
    return _aligned(lines)


def format_details(
    recording: Recording, backups: Sequence[dict[str, Any]], audit: Sequence[dict[str, Any]]
) -> str:
    """Every field of one recording, its agents' segments, QA, backups and audit trail."""
    r = recording
    state = _state(r)
    hold = f"yes: {r.hold_reason}" if r.legal_hold else "no"
    deleted = "-"
    if r.deleted is not None:
        deleted = f"{_local(r.deleted)} by {r.deleted_by} (policy {r.deleted_policy})"
    fields = [
        ("recording", r.id),
        ("kind", r.kind),
        ("call id", r.call_id),
        ("legs", ", ".join(r.legs) or "-"),
        ("file", r.path),
        ("started", _local(r.started)),
        ("ended", _local(r.ended)),
        ("duration", _duration(r.duration)),
        ("caller", r.caller or "-"),
        ("called", r.called or "-"),
        ("queue", r.queue or "-"),
        ("service type", r.service_type or "-"),
        ("customer id", r.customer_id or "-"),
        ("mailbox", r.mailbox or "-"),
        ("agents", ", ".join(r.agents) or "-"),
        ("state", state if state != "-" else "complete"),
        ("size", "-" if r.bytes is None else f"{r.bytes} bytes"),
        ("sha256", r.sha256 or "-"),
        ("audio lost", f"{r.lost_seconds:.1f} s"),
        ("error", r.error or "-"),
        ("policy", r.policy or "-"),
        ("audio kept to", _local(r.expires)),
        ("legal hold", hold),
        ("deleted", deleted),
    ]
    lines = [f"{name + ':':<15}{value}" for name, value in fields]
    lines.append("segments:" + ("" if r.segments else " -"))
    lines += [
        f"  agent {s.agent_id}  leg {s.leg_id}  {_duration(s.start)} - {_duration(s.end)}"
        for s in r.segments
    ]
    lines.append("qa:" + ("" if r.qa else " -"))
    lines += [f"  {line}" for line in _qa_summary(r.qa or {})]
    lines.append("backups:" + ("" if backups else " -"))
    lines += [
        f"  {_local(b['at'])}  {b['target']}  "
        + (f"failed: {b['error']}" if b["error"] else f"copied to {b['remote']}")
        for b in backups
    ]
    lines.append("audit:" + ("" if audit else " -"))
    lines += [
        f"  {_local(a['at'])}  {a['user']}  {a['action']}  {a['detail'] or ''}".rstrip()
        for a in audit
    ]
    return "\n".join(lines)


def _qa_summary(qa: dict[str, Any]) -> list[str]:
    """The figures of a `recorder.qa.QaResult` as the index holds it (a JSON object)."""
    if not qa:
        return []
    ratio = qa.get("agent_talk_ratio")
    silences = qa.get("long_silences") or []
    transcript = qa.get("transcript")
    return [
        f"caller talk {qa.get('caller_talk', 0):.1f} s, agent talk {qa.get('agent_talk', 0):.1f} s"
        + ("" if ratio is None else f", agent share {ratio:.0%}"),
        f"over-talk {qa.get('overtalk_count', 0)} times, {qa.get('overtalk_seconds', 0):.1f} s",
        f"long silences {len(silences)}"
        + "".join(f", {start:.1f}-{end:.1f} s" for start, end in silences),
        "flags " + (", ".join(qa.get("flags") or []) or "-"),
        "transcript "
        + ("-" if transcript is None else f"{len(transcript)} utterances (in --json)"),
    ]


def _aligned(lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _local(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _state(r: Recording) -> str:
    states = [
        name
        for name, on in (
            ("incomplete", r.incomplete),
            ("deleted", r.deleted),
            ("held", r.legal_hold),
        )
        if on
    ]
    return ",".join(states) or "-"


# --- audio ----------------------------------------------------------------------------------
def export_command(args: argparse.Namespace, out: TextIO) -> int:
    viewer = _viewer(args)
    target = Path(args.file)
    suffix = target.suffix.lower()
    if suffix not in (".opus", ".ogg", ".wav"):
        raise CliError(f"{target}: FILE must end in .opus or .ogg (as recorded) or .wav", 2)
    directory, _ = _settings(args)
    with _visible(args, viewer, directory) as (index, recording):
        source = _checked_audio(index, recording)
        if suffix == ".wav":
            note = _write_wav(recording.id, source, target)
        else:
            item = BackupItem(
                recording.id, source, target.name, recording.sha256 or "", recording.bytes or 0
            )
            try:  # copied through FILE.part, renamed once its SHA-256 reads back right
                DirectoryTarget(target.parent).put(item)
            except BackupError as exc:
                raise CliError(f"{recording.id}: not exported: {exc}") from None
            note = f"{recording.bytes} bytes, sha256 checked"
        index.audit(
            at=time.time(),
            user=_who(viewer),
            action="export",
            recording_id=recording.id,
            detail=f"to {target.resolve()}",
        )
    print(f"exported {recording.id} to {target} ({note})", file=out)
    return 0


def _decoded(recording_id: str, source: Path) -> tuple[Any, int, bool]:
    """(int16 frames, one column a channel; sample rate; whether the file has its end)."""
    import numpy as np  # late, as recorder.opus: only decoding needs numpy

    from recorder.opus import RATE, read_ogg_opus

    try:
        pcm, channels, complete = read_ogg_opus(source)
    except ValueError as exc:
        raise CliError(f"{recording_id}: cannot decode: {exc}") from None
    return np.frombuffer(pcm, dtype=np.int16).reshape(-1, channels), RATE, complete


def _write_wav(recording_id: str, source: Path, target: Path) -> str:
    """Decode the Ogg Opus `source` into a 16-bit WAV at `target`, written whole or not at
    all (through a temporary file in its directory)."""
    import soundfile

    frames, rate, complete = _decoded(recording_id, source)
    fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            soundfile.write(f, frames, rate, format="WAV", subtype="PCM_16")
        os.replace(part, target)
    except RuntimeError as exc:  # libsndfile's errors
        raise CliError(f"{recording_id}: cannot write {target}: {exc}") from None
    finally:
        Path(part).unlink(missing_ok=True)
    return f"{len(frames) / rate:.1f} s, {frames.shape[1]} channel(s)" + (
        "" if complete else "; the file lacks its end"
    )


def play_command(args: argparse.Namespace, out: TextIO) -> int:
    viewer = _viewer(args)
    directory, _ = _settings(args)
    with _visible(args, viewer, directory) as (index, recording):
        source = _checked_audio(index, recording)
        sounddevice = _sounddevice(recording.id)
        frames, rate, _complete = _decoded(recording.id, source)
        try:
            sounddevice.play(frames, samplerate=rate)
        except sounddevice.PortAudioError as exc:
            raise CliError(f"{recording.id}: cannot play: {exc}") from None
        index.audit(at=time.time(), user=_who(viewer), action="play", recording_id=recording.id)
        print(
            f"playing {recording.id} ({_duration(len(frames) / rate)}"
            + (", caller left, agent right" if frames.shape[1] == 2 else "")
            + "); Ctrl-C stops",
            file=out,
        )
        try:
            sounddevice.wait()
        except KeyboardInterrupt:
            sounddevice.stop()
            return 130
    return 0


def _sounddevice(recording_id: str) -> Any:
    """The `sounddevice` module once it has a default output device; else CliError."""
    try:
        import sounddevice
    except ImportError:
        raise CliError(_NO_SOUNDDEVICE) from None
    except OSError as exc:  # the module is there, the PortAudio library is not
        raise CliError(
            f"sounddevice cannot load PortAudio ({exc}): install libportaudio2"
        ) from None
    try:
        sounddevice.query_devices(kind="output")
    except (sounddevice.PortAudioError, ValueError):
        raise CliError(
            "no audio output device here: export it with "
            f"`hotline recordings export {recording_id} file.wav`"
        ) from None
    return sounddevice


# --- changes (admins) -----------------------------------------------------------------------
@contextmanager
def _refusals(recording_id: str, viewer: Viewer) -> Iterator[None]:
    """`recorder.retention`'s refusals as one-line errors."""
    try:
        yield
    except AccessDeniedError as exc:
        raise CliError(str(exc)) from None
    except KeyError:
        raise _not_found(recording_id, viewer) from None
    except ValueError as exc:
        raise CliError(str(exc)) from None


def delete_command(args: argparse.Namespace, out: TextIO) -> int:
    viewer = _viewer(args)
    directory, _ = _settings(args)
    index = _open_index(args, directory)
    if index is None:
        raise _not_found(args.id, viewer)
    with closing(index), _refusals(args.id, viewer):
        recording = delete_recording(
            index, args.id, viewer=viewer, reason=args.reason, now=time.time()
        )
    print(
        f"deleted the audio of {recording.id} ({directory / recording.path}); its record "
        "stays in the index",
        file=out,
    )
    return 0


def hold_command(args: argparse.Namespace, out: TextIO) -> int:
    viewer = _viewer(args)
    on = args.action == "hold"
    index = _open_index(args)
    if index is None:
        raise _not_found(args.id, viewer)
    with closing(index), _refusals(args.id, viewer):
        set_hold(index, args.id, on, viewer=viewer, reason=args.reason, now=time.time())
    print(f"{args.id}: legal hold {'set' if on else 'lifted'}", file=out)
    return 0


# --- passes ---------------------------------------------------------------------------------
def retention_command(args: argparse.Namespace, out: TextIO) -> int:
    directory, settings = _settings(args)
    if not (Path(args.data) / INDEX_NAME).exists():
        print("no recordings", file=out)
        return 0
    try:
        report = retention_pass(settings, Path(args.data), directory, dry_run=args.dry_run)
    except ValueError as exc:  # the backup target's URL
        raise CliError(f"recording.backup.target: {exc}", 2) from None
    print(_retention_summary(report), file=out)
    for error in report.errors:
        print(f"hotline: {error}", file=sys.stderr)
    return 1 if report.errors else 0


def _retention_summary(report: RetentionReport) -> str:
    would = "would be " if report.dry_run else ""
    lines = [
        ("dry run: " if report.dry_run else "")
        + f"{len(report.deleted)} recordings {would}deleted ({report.bytes_freed} bytes), "
        f"call records of {len(report.forgotten)} {would}forgotten"
        + ("" if report.dry_run else f", {len(report.kept)} kept (the copy failed)")
    ]
    for name, ids in (
        ("deleted", report.deleted),
        ("backed up first", report.backed_up),
        ("forgotten", report.forgotten),
        ("kept", report.kept),
    ):
        if ids:
            lines.append(f"{would}{name}: {' '.join(ids)}")
    return "\n".join(lines)


def backup_command(args: argparse.Namespace, out: TextIO) -> int:
    directory, settings = _settings(args)
    if not settings.backup.target:
        raise CliError("no backup target: set recording.backup.target in node.yaml")
    if not (Path(args.data) / INDEX_NAME).exists():
        print("no recordings", file=out)
        return 0
    try:
        report = backup_pass(settings, Path(args.data), directory)
    except ValueError as exc:  # the target's URL
        raise CliError(f"recording.backup.target: {exc}", 2) from None
    print(f"backup: {report.sent} sent ({report.bytes} bytes), {report.failed} failed", file=out)
    for error in report.errors:
        print(f"hotline: {error}", file=sys.stderr)
    return 1 if report.failed else 0


_ACTIONS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "search": search_command,
    "show": show_command,
    "export": export_command,
    "play": play_command,
    "delete": delete_command,
    "hold": hold_command,
    "unhold": hold_command,
    "retention": retention_command,
    "backup": backup_command,
}

__all__ = [
    "CliError",
    "add_parser",
    "format_details",
    "format_table",
    "parse_time",
    "recordings_command",
]
