"""The call trace a load test replays: one row per call, in the order the calls arrive.

Format, version 1 (CSV, UTF-8)::

    # hotline-trace 1
    # seed: 7
    # profile: hotline-day
    call_id,offset_s,caller,called,region,keys,patience_s,talk_s,wrap_s
    c0000001,0.412,01062345678,12345,beijing,1@2.31,74.2,181.3,15.0
    c0000002,3.018,13801234567,12345,mobile,,,95.0,15.0

- Lines starting with ``#`` are comments. The first line ``# hotline-trace 1`` names the
  version (a file without it is read as version 1; any other version is refused). Comment
  lines of the form ``# key: value`` before the header are metadata (seed, profile, the
  generator's arguments, where a converted trace came from); they are kept in
  `Trace.metadata` and written back.
- A header row naming exactly `COLUMNS`, in that order, is required. Blank lines are ignored.
- ``call_id``: non-empty, unique in the file.
- ``offset_s``: seconds from the start of the trace at which the call arrives; a finite
  number >= 0, never smaller than the previous row's.
- ``caller``: digits, optionally with a leading ``+``; ``called``: digits.
- ``region``: the caller's region name, free text, may be empty.
- ``keys``: the IVR key presses, space-separated ``KEY@THINK`` items: KEY one of ``0``-``9``,
  ``*``, ``#``; THINK the seconds (>= 0) the caller waits before pressing it, counted from the
  moment the previous key was pressed (the first one: from the answer by the IVR). Empty: the
  caller presses nothing.
- ``patience_s``: seconds the caller waits in a queue before hanging up; empty: forever.
- ``talk_s``: seconds of conversation once an agent answers; ``wrap_s``: the agent's wrap-up
  (after-call work) once the call ends. Both finite numbers >= 0.

Parquet (a ``.parquet`` suffix, where pyarrow is installed): the same columns, ``offset_s``,
``patience_s`` (nullable), ``talk_s``, ``wrap_s`` as float64 and the others as strings; the
version and metadata in the schema's key-value metadata. Errors in a Parquet file name the
row (1-based) where a CSV file names the line.

Problems are collected, not raised one by one: `read_trace` raises one `TraceError` whose
`errors` are ``file:line: column: message`` lines, e.g.
``day.csv:17: offset_s: 12.5 is before the previous call's 13.0``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

VERSION = 1
MAGIC = "hotline-trace"
COLUMNS = (
    "call_id", "offset_s", "caller", "called", "region", "keys", "patience_s", "talk_s",
    "wrap_s",
)  # fmt: skip
KEYS = frozenset("0123456789*#")

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_CALLER = re.compile(r"\+?\d+")
_CALLED = re.compile(r"\d+")
_META = re.compile(r"#\s*([A-Za-z0-9_.-]+)\s*:\s?(.*)")
_VERSION_LINE = re.compile(r"#\s*" + MAGIC + r"\s+(\S+)\s*")
NO_PYARROW = "Parquet traces need pyarrow (pip install 'hotline[parquet]' or pip install pyarrow)"


class TraceError(Exception):
    """A trace that cannot be read or written; `errors` holds every problem found, each a
    ``file:line: column: message`` line."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


class KeyPress(msgspec.Struct, frozen=True):
    """One IVR key: `key` pressed `think_s` seconds after the previous one (or the answer)."""

    key: str
    think_s: float


class TraceCall(msgspec.Struct, frozen=True):
    """One call of a trace (one row). `patience_s` None: the caller waits forever."""

    call_id: str
    offset_s: float
    caller: str
    called: str
    region: str = ""
    keys: tuple[KeyPress, ...] = ()
    patience_s: float | None = None
    talk_s: float = 0.0
    wrap_s: float = 0.0


class Trace(msgspec.Struct, frozen=True):
    """The calls of a trace, in arrival order, and its metadata (``# key: value`` lines)."""

    calls: tuple[TraceCall, ...]
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


# --- values -----------------------------------------------------------------------------------
def format_seconds(value: float) -> str:
    """A number of seconds as written in a trace: the shortest text that reads back exactly."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def format_keys(keys: Iterable[KeyPress]) -> str:
    """The ``keys`` column text of `keys`."""
    return " ".join(f"{k.key}@{format_seconds(k.think_s)}" for k in keys)


def parse_keys(text: str) -> tuple[KeyPress, ...]:
    """The key presses of a ``keys`` column; `ValueError` with a message naming the item."""
    presses = []
    for item in text.split():
        key, at, think = item.partition("@")
        if not at:
            raise ValueError(f"{item!r}: expected KEY@THINK (e.g. 1@2.5)")
        if key not in KEYS:
            raise ValueError(f"{item!r}: key {key!r} is not one of 0-9, *, #")
        seconds = _seconds(think)
        if seconds is None or seconds < 0:
            raise ValueError(f"{item!r}: think time {think!r} is not a number >= 0")
        presses.append(KeyPress(key, seconds))
    return tuple(presses)


def _seconds(text: str) -> float | None:
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


# --- rows -------------------------------------------------------------------------------------
class _Checker:
    """Validates rows of text (one per call, `COLUMNS` order) and builds `TraceCall`s,
    collecting ``file:line: column: message`` lines."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[str] = []
        self.calls: list[TraceCall] = []
        self._seen: dict[str, int] = {}
        self._previous_offset: tuple[float, str] | None = None

    def error(self, line: int, column: str, message: str) -> None:
        self.errors.append(f"{self.name}:{line}: {column}: {message}")

    def header(self, line: int, fields: Sequence[str]) -> bool:
        names = [f.strip() for f in fields]
        if tuple(names) == COLUMNS:
            return True
        missing = [c for c in COLUMNS if c not in names]
        extra = [n for n in names if n not in COLUMNS]
        for column in missing:
            self.error(line, "header", f"missing column {column}")
        for column in extra:
            self.error(line, "header", f"unknown column {column!r}")
        if not missing and not extra:
            self.error(
                line,
                "header",
                f"columns must be in the order {','.join(COLUMNS)}, got {','.join(names)}",
            )
        return False

    def _number(self, line: int, column: str, text: str, *, optional: bool = False) -> float | None:
        if text == "" and optional:
            return None
        value = _seconds(text)
        if value is None:
            self.error(line, column, f"{text!r} is not a number" if text else "empty")
            return None
        if value < 0:
            self.error(line, column, f"{text} is negative")
            return None
        return value

    def row(self, line: int, fields: Sequence[str]) -> None:
        if len(fields) != len(COLUMNS):
            self.error(line, "row", f"{len(fields)} fields, expected {len(COLUMNS)}")
            return
        call_id, offset, caller, called, region, keys, patience, talk, wrap = fields
        ok = len(self.errors)
        if not call_id:
            self.error(line, "call_id", "empty")
        elif call_id in self._seen:
            self.error(line, "call_id", f"{call_id!r} repeats line {self._seen[call_id]}")
        else:
            self._seen[call_id] = line
        offset_s = self._number(line, "offset_s", offset)
        if offset_s is not None:
            previous = self._previous_offset
            if previous is not None and offset_s < previous[0]:
                self.error(
                    line,
                    "offset_s",
                    f"{offset} is before the previous call's {previous[1]}",
                )
            else:
                self._previous_offset = (offset_s, offset)
        if not _CALLER.fullmatch(caller):
            self.error(line, "caller", f"{caller!r} is not digits (optionally with a leading +)")
        if not _CALLED.fullmatch(called):
            self.error(line, "called", f"{called!r} is not digits")
        presses: tuple[KeyPress, ...] = ()
        try:
            presses = parse_keys(keys)
        except ValueError as exc:
            self.error(line, "keys", str(exc))
        patience_s = self._number(line, "patience_s", patience, optional=True)
        talk_s = self._number(line, "talk_s", talk)
        wrap_s = self._number(line, "wrap_s", wrap)
        if len(self.errors) == ok:
            assert offset_s is not None and talk_s is not None and wrap_s is not None
            self.calls.append(
                TraceCall(
                    call_id, offset_s, caller, called, region, presses, patience_s, talk_s, wrap_s
                )
            )

    def trace(self, metadata: dict[str, str]) -> Trace:
        if self.errors:
            raise TraceError(self.errors)
        return Trace(tuple(self.calls), metadata)


def _row_texts(call: TraceCall) -> list[str]:
    patience = "" if call.patience_s is None else format_seconds(call.patience_s)
    return [
        call.call_id, format_seconds(call.offset_s), call.caller, call.called, call.region,
        format_keys(call.keys), patience, format_seconds(call.talk_s), format_seconds(call.wrap_s),
    ]  # fmt: skip


def check_calls(calls: Iterable[TraceCall], name: str = "trace") -> list[str]:
    """The problems `read_trace` would report for these calls written as a CSV file `name`
    (the first call on line 3, after the version line and the header)."""
    checker = _Checker(name)
    for line, call in enumerate(calls, start=3):
        checker.row(line, _row_texts(call))
    return checker.errors


# --- CSV --------------------------------------------------------------------------------------
def parse_csv(text: str, name: str) -> Trace:
    """The trace in CSV `text`; `name` is the file name used in errors."""
    checker = _Checker(name)
    metadata: dict[str, str] = {}
    header_seen = False
    content: list[tuple[int, str]] = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        if line.startswith("#"):
            version = _VERSION_LINE.fullmatch(line)
            if version is not None:
                if number != 1:
                    checker.error(number, "version", f"{line!r} must be the first line")
                elif version.group(1) != str(VERSION):
                    checker.error(
                        number,
                        "version",
                        f"version {version.group(1)!r} is not supported (only {VERSION})",
                    )
                    raise TraceError(checker.errors)
                continue
            meta = _META.fullmatch(line)
            if meta is not None and not header_seen:
                metadata[meta.group(1)] = meta.group(2).strip()
            continue
        if not line.strip():
            continue
        if not header_seen:
            header_seen = True
            fields = next(csv.reader([line]))
            if not checker.header(number, fields):
                raise TraceError(checker.errors)
            continue
        content.append((number, line))
    if not header_seen:
        checker.error(1, "header", f"no header row (expected {','.join(COLUMNS)})")
        raise TraceError(checker.errors)
    for number, line in content:  # a line is a row: fields hold no line breaks
        checker.row(number, next(csv.reader([line])))
    return checker.trace(metadata)


def format_csv(trace: Trace) -> str:
    """`trace` as CSV text (version line, metadata, header, rows)."""
    out = io.StringIO()
    out.write(f"# {MAGIC} {VERSION}\n")
    for key, value in trace.metadata.items():
        out.write(f"# {key}: {value}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for call in trace.calls:
        writer.writerow(_row_texts(call))
    return out.getvalue()


# --- Parquet ----------------------------------------------------------------------------------
def _pyarrow(path: Path) -> Any:
    try:
        import pyarrow  # type: ignore[import-not-found]
        import pyarrow.parquet  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        raise TraceError([f"{path}: {NO_PYARROW}"]) from None
    return pyarrow


def _read_parquet(path: Path) -> Trace:
    pa = _pyarrow(path)
    name = str(path)
    try:
        table = pa.parquet.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise TraceError([f"{name}: {exc}"]) from None
    checker = _Checker(name)
    raw_meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    version = raw_meta.pop(MAGIC, str(VERSION))
    if version != str(VERSION):
        raise TraceError(
            [f"{name}:0: version: version {version!r} is not supported (only {VERSION})"]
        )
    metadata = {k: v for k, v in raw_meta.items() if not k.startswith("pandas")}
    if not checker.header(0, table.column_names):
        raise TraceError(checker.errors)
    columns = [table.column(c).to_pylist() for c in COLUMNS]
    for index, values in enumerate(zip(*columns, strict=True), start=1):
        checker.row(index, [_parquet_text(v) for v in values])
    return checker.trace(metadata)


def _parquet_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format_seconds(value)
    return str(value)


def _write_parquet(path: Path, trace: Trace) -> None:
    pa = _pyarrow(path)
    calls = trace.calls
    strings = {
        "call_id": [c.call_id for c in calls], "caller": [c.caller for c in calls],
        "called": [c.called for c in calls], "region": [c.region for c in calls],
        "keys": [format_keys(c.keys) for c in calls],
    }  # fmt: skip
    floats = {
        "offset_s": [c.offset_s for c in calls], "patience_s": [c.patience_s for c in calls],
        "talk_s": [c.talk_s for c in calls], "wrap_s": [c.wrap_s for c in calls],
    }  # fmt: skip
    arrays = [
        pa.array(strings[c], pa.string()) if c in strings else pa.array(floats[c], pa.float64())
        for c in COLUMNS
    ]
    metadata = {MAGIC: str(VERSION), **trace.metadata}
    table = pa.Table.from_arrays(arrays, names=list(COLUMNS), metadata=metadata)
    pa.parquet.write_table(table, path)


# --- files ------------------------------------------------------------------------------------
def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".parquet"


def read_trace(path: str | Path) -> Trace:
    """The trace in `path` (CSV, or Parquet by its ``.parquet`` suffix), validated.

    Raises `TraceError` with every problem found (also for a file that cannot be read)."""
    path = Path(path)
    if is_parquet(path):
        return _read_parquet(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError([f"{path}: {exc}"]) from None
    return parse_csv(text, str(path))


def write_trace(path: str | Path, trace: Trace) -> None:
    """Write `trace` to `path` (CSV, or Parquet by its ``.parquet`` suffix).

    The calls are checked first, as `read_trace` would check them: a trace that could not be
    read back raises `TraceError` and nothing is written."""
    path = Path(path)
    errors = check_calls(trace.calls, str(path))
    bad_meta = [k for k in trace.metadata if not re.fullmatch(r"[A-Za-z0-9_.-]+", k)]
    errors += [f"{path}:1: metadata: key {k!r} is not [A-Za-z0-9_.-]+" for k in bad_meta]
    errors += [
        f"{path}:1: metadata: value of {k!r} holds a line break"
        for k, v in trace.metadata.items()
        if "\n" in v or "\r" in v
    ]
    if errors:
        raise TraceError(errors)
    if is_parquet(path):
        _write_parquet(path, trace)
        return
    path.write_text(format_csv(trace), encoding="utf-8")
