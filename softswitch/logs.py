"""The node's log output: one line per record, `time level logger: message`, to a stream.

A busy node logs a few lines per call (hundreds per second), so the set-up leaves out what
its format never prints: the caller's file and line (a stack walk per record), thread and
process names (the logging HOWTO's "Optimization" section lists these switches). The time
stamp's date and time part is formatted once per second, not once per record.
"""

from __future__ import annotations

import logging
import time
from typing import IO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Formatter(logging.Formatter):
    """`logging.Formatter`'s default time format (`2026-12-07 02:35:47,123`, local time),
    with the seconds part formatted once per second."""

    def __init__(self, fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"  # the default_msec_format


def configure(level: int, stream: IO[str]) -> None:
    """Send records of `level` and above from every logger to `stream`."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]  # no caller lookup (HOWTO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(Formatter())
    logging.basicConfig(level=level, handlers=[handler])
