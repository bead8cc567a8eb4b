"""The node's log formatter writes what logging's default one would, only faster."""

from __future__ import annotations

import logging

from softswitch.logs import FORMAT, Formatter


def record(created: float, message: str = "call=hl1-1 sip=x ended") -> logging.LogRecord:
    item = logging.LogRecord("hotline.call", logging.INFO, __file__, 1, message, None, None)
    item.created = created
    item.msecs = (created - int(created)) * 1000
    return item


def test_lines_match_the_standard_formatter_across_seconds() -> None:
    ours, standard = Formatter(), logging.Formatter(FORMAT)
    # Within one second, into the next, back again (a clock step) and far away.
    for created in (1765000000.001, 1765000000.999, 1765000001.5, 1765000000.25, 1800000000.0):
        item = record(created)
        assert ours.format(item) == standard.format(item)


def test_an_explicit_date_format_is_still_honoured() -> None:
    item = record(1765000000.5)
    assert Formatter().formatTime(item, "%Y") == logging.Formatter().formatTime(item, "%Y")
