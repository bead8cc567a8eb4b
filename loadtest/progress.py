"""The progress display of `hotline loadtest run`: a tqdm bar on a terminal when tqdm is
installed, else a plain line on stderr every few seconds."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

from loadtest.report import Outcome


class Progress:
    """tqdm on a terminal when it is installed, else a plain line every `every` seconds."""

    def __init__(self, total: int, enabled: bool, every: float = 5.0) -> None:
        self.total = total
        self.enabled = enabled
        self.every = every
        self.counts: dict[str, int] = {}
        self.done = 0
        self._last = time.monotonic()
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            with contextlib.suppress(ImportError):
                import tqdm  # type: ignore[import-untyped]

                self._bar = tqdm.tqdm(total=total, unit="call", file=sys.stderr)

    def call_ended(self, outcome: Outcome | None) -> None:
        self.done += 1
        name = outcome.value if outcome is not None else "not started"
        self.counts[name] = self.counts.get(name, 0) + 1
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(self.counts, refresh=False)
            return
        if self.enabled and time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            self._line()

    def _line(self) -> None:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))
        print(f"loadtest: {self.done}/{self.total} calls done ({parts})", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.done:
            self._line()
