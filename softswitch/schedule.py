"""Working-hours schedules (SPEC DP-3): is a hotline open at a given moment?

A schedule is what admins write under ``schedules:`` in ``dialplan.yaml``: a time zone,
opening hours per weekday, holidays (closed all day) and make-up working days (调休: a
Saturday or Sunday worked instead of a holiday, open during ``workday_hours``). Precedence,
for one local calendar date: a holiday is closed; else a make-up working day uses
``workday_hours``; else the weekday's ``hours`` apply.

Hours are ``"HH:MM-HH:MM"`` intervals in local wall-clock time, start included, end
excluded; ``24:00`` may end an interval (``"00:00-24:00"`` is the whole day). An interval
must not cross midnight (start < end): write ``fri: ["22:00-24:00"]`` and ``sat:
["00:00-06:00"]`` instead — two days' intervals that meet at midnight are one opening for
`next_change`. Dates are ``YYYY-MM-DD`` or an inclusive range ``YYYY-MM-DD..YYYY-MM-DD``.

Pure: no clock is read; time is an argument (epoch seconds). The only I/O is the time zone
database behind `zoneinfo`, read once per schedule value.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cached_property
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta

__all__ = [
    "DEFAULT_WORKDAY_HOURS",
    "Schedule",
    "WeekHours",
    "is_open",
    "next_change",
    "parse_dates",
    "parse_interval",
    "schedule_problems",
]

#: Hours of a make-up working day when ``workday_hours`` is not given: the usual office day
#: of a Chinese government service centre.
DEFAULT_WORKDAY_HOURS = ("08:30-18:00",)

_DAY = 86400
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Intervals = Annotated[
    tuple[str, ...],
    Meta(description='Opening intervals `"HH:MM-HH:MM"`, local time; empty: closed.'),
]
Interval = tuple[int, int]  # seconds of the local day: [start, end)
Problem = tuple[tuple[str | int, ...], str]


class WeekHours(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Opening hours per weekday; a day not given is closed."""

    mon: Intervals = ()
    tue: Intervals = ()
    wed: Intervals = ()
    thu: Intervals = ()
    fri: Intervals = ()
    sat: Intervals = ()
    sun: Intervals = ()


class Schedule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """Working hours of a service (DP-3): weekly hours, holidays and make-up working days."""

    timezone: Annotated[str, Meta(description="IANA time zone of the hours, e.g. `Asia/Shanghai`.")]
    hours: Annotated[WeekHours, Meta(description="Opening hours per weekday.")] = WeekHours()
    holidays: Annotated[
        tuple[str, ...],
        Meta(
            description="Closed all day: dates `YYYY-MM-DD` or ranges "
            "`YYYY-MM-DD..YYYY-MM-DD` (inclusive)."
        ),
    ] = ()
    workdays: Annotated[
        tuple[str, ...],
        Meta(
            description="Make-up working days (e.g. a Sunday worked for a holiday): open "
            "during `workday_hours` instead of that weekday's hours. Dates or ranges."
        ),
    ] = ()
    workday_hours: Annotated[
        tuple[str, ...],
        Meta(description="Opening intervals of make-up working days."),
    ] = DEFAULT_WORKDAY_HOURS

    @cached_property
    def zone(self) -> ZoneInfo:
        """The time zone (the loader has checked that it exists)."""
        return ZoneInfo(self.timezone)

    @cached_property
    def _week(self) -> tuple[tuple[Interval, ...], ...]:
        return tuple(_intervals(getattr(self.hours, day)) for day in _WEEKDAYS)

    @cached_property
    def _workday(self) -> tuple[Interval, ...]:
        return _intervals(self.workday_hours)

    @cached_property
    def _holidays(self) -> frozenset[dt.date]:
        return frozenset(d for text in self.holidays for d in parse_dates(text))

    @cached_property
    def _workdays(self) -> frozenset[dt.date]:
        return frozenset(d for text in self.workdays for d in parse_dates(text))

    def intervals_on(self, day: dt.date) -> tuple[Interval, ...]:
        """The opening intervals of local date ``day``, seconds of the day, sorted."""
        if day in self._holidays:
            return ()
        if day in self._workdays:
            return self._workday
        return self._week[day.weekday()]


def parse_interval(text: str) -> Interval:
    """``"08:30-18:00"`` → (30600, 64800) seconds of the day; ValueError with the reason."""
    start_text, sep, end_text = text.partition("-")
    if not sep:
        raise ValueError(f'expected "HH:MM-HH:MM", got {text!r}')
    start, end = _parse_time(start_text.strip(), text), _parse_time(end_text.strip(), text)
    if start >= end:
        raise ValueError(
            f"{text!r}: start must be before end (an interval may not cross midnight; "
            "end it at 24:00 and continue at 00:00 on the next day)"
        )
    return start, end


def _parse_time(part: str, text: str) -> int:
    match = _TIME.match(part)
    if match is None:
        raise ValueError(f'expected "HH:MM-HH:MM", got {text!r}')
    hour, minute = int(match.group(1)), int(match.group(2))
    if minute > 59 or hour > 24 or (hour == 24 and minute != 0):
        raise ValueError(f"{text!r}: {part} is not a time of day (00:00 to 24:00)")
    return hour * 3600 + minute * 60


def parse_dates(text: str) -> list[dt.date]:
    """``"2026-10-01"`` or ``"2026-10-01..2026-10-07"`` → the dates; ValueError if invalid."""
    first_text, sep, last_text = text.partition("..")
    first = _parse_date(first_text.strip(), text)
    last = _parse_date(last_text.strip(), text) if sep else first
    if last < first:
        raise ValueError(f"{text!r}: the range ends before it starts")
    if (last - first).days > 366:
        raise ValueError(f"{text!r}: a range may span at most a year")
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _parse_date(part: str, text: str) -> dt.date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", part):
        raise ValueError(f'expected a date "YYYY-MM-DD" or "YYYY-MM-DD..YYYY-MM-DD", got {text!r}')
    try:
        return dt.date.fromisoformat(part)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from exc


def _intervals(texts: tuple[str, ...]) -> tuple[Interval, ...]:
    return tuple(sorted(parse_interval(text) for text in texts))


def schedule_problems(schedule: Schedule) -> list[Problem]:
    """Every problem of ``schedule``, as (path inside the schedule, message)."""
    problems: list[Problem] = []
    try:
        ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append((("timezone",), f"unknown time zone {schedule.timezone!r}"))
    days: list[tuple[tuple[str | int, ...], tuple[str, ...]]] = [
        (("hours", day), getattr(schedule.hours, day)) for day in _WEEKDAYS
    ]
    days.append((("workday_hours",), schedule.workday_hours))
    for path, texts in days:
        parsed: list[tuple[Interval, int]] = []
        for i, text in enumerate(texts):
            try:
                parsed.append((parse_interval(text), i))
            except ValueError as exc:
                problems.append(((*path, i), str(exc)))
        parsed.sort()
        for (before, first), (after, second) in zip(parsed, parsed[1:], strict=False):
            if after[0] < before[1]:
                problems.append(((*path, second), f"{texts[second]!r} overlaps {texts[first]!r}"))
    holidays: dict[dt.date, int] = {}
    for key in ("holidays", "workdays"):
        for i, text in enumerate(getattr(schedule, key)):
            try:
                dates = parse_dates(text)
            except ValueError as exc:
                problems.append(((key, i), str(exc)))
                continue
            if key == "holidays":
                for day in dates:
                    holidays.setdefault(day, i)
                continue
            clash = next((d for d in dates if d in holidays), None)
            if clash is not None:
                problems.append(
                    ((key, i), f"{clash} is also a holiday (holidays[{holidays[clash]}])")
                )
    return problems


def is_open(schedule: Schedule, epoch: float) -> bool:
    """True if ``schedule`` is open at ``epoch`` (seconds since 1970, UTC).

    The moment is turned into local wall-clock time in the schedule's zone, so hours follow
    daylight-saving changes: ``08:30`` is 08:30 local in summer and in winter.
    """
    local = dt.datetime.fromtimestamp(epoch, schedule.zone)
    second = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    return any(start <= second < end for start, end in schedule.intervals_on(local.date()))


def next_change(schedule: Schedule, epoch: float, horizon_days: int = 400) -> float | None:
    """The first moment after ``epoch`` when `is_open` changes, or None if it does not
    change within ``horizon_days`` (e.g. a schedule that is never open).

    Openings that meet (``24:00`` one day, ``00:00`` the next) count as one. At a
    daylight-saving change the boundary is the wall-clock time's first occurrence.
    """
    state = is_open(schedule, epoch)
    start_day = dt.datetime.fromtimestamp(epoch, schedule.zone).date()
    current_end: float | None = None  # end of the opening that contains epoch
    for n in range(-1, horizon_days + 1):
        day = start_day + dt.timedelta(days=n)
        for start, end in schedule.intervals_on(day):
            opens, closes = _epoch(schedule, day, start), _epoch(schedule, day, end)
            if not state:
                if opens > epoch:
                    return opens
                continue
            if current_end is None:
                if opens <= epoch < closes:
                    current_end = closes
            elif opens <= current_end:
                current_end = max(current_end, closes)
            else:
                return current_end
    return None  # open (or closed) through the whole horizon


def _epoch(schedule: Schedule, day: dt.date, second: int) -> float:
    """Epoch seconds of local wall time ``second`` of ``day`` (86400: next day's 00:00)."""
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=schedule.zone)
    # Aware-datetime arithmetic is wall-clock arithmetic; timestamp() applies the offset in
    # force at the resulting wall time.
    return (midnight + dt.timedelta(seconds=second)).timestamp()
