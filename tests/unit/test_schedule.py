"""Working hours (DP-3): weekly hours, holidays, make-up days, time zones with and without DST."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from softswitch.schedule import (
    Schedule,
    WeekHours,
    is_open,
    next_change,
    parse_dates,
    parse_interval,
    schedule_problems,
)

OFFICE = ["08:30-18:00"]
SHANGHAI = Schedule(
    timezone="Asia/Shanghai",
    hours=WeekHours(
        mon=OFFICE, tue=OFFICE, wed=OFFICE, thu=OFFICE, fri=("08:30-12:00", "13:30-18:00")
    ),
    holidays=("2026-01-01", "2026-10-01..2026-10-07"),
    workdays=("2026-09-27", "2026-10-10"),
)
NINE_TO_FIVE = ["09:00-17:00"]
BERLIN = Schedule(
    timezone="Europe/Berlin",
    hours=WeekHours(
        mon=NINE_TO_FIVE, tue=NINE_TO_FIVE, wed=NINE_TO_FIVE, thu=NINE_TO_FIVE, fri=NINE_TO_FIVE
    ),
)


def at(zone: str, text: str) -> float:
    """Epoch seconds of local time ``text`` (ISO) in ``zone``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-12-07T08:29:59", False),  # Monday, before opening
        ("2026-12-07T08:30:00", True),  # opening is included
        ("2026-12-07T17:59:59", True),
        ("2026-12-07T18:00:00", False),  # closing is excluded
        ("2026-12-11T12:30:00", False),  # Friday lunch break between two intervals
        ("2026-12-11T13:30:00", True),
        ("2026-12-12T10:00:00", False),  # Saturday
        ("2026-12-13T10:00:00", False),  # Sunday
    ],
)
def test_weekly_hours_in_local_time(local: str, expected: bool) -> None:
    assert is_open(SHANGHAI, at("Asia/Shanghai", local)) is expected


def test_hours_are_local_to_the_schedules_zone_not_utc() -> None:
    # 08:30 in Shanghai (UTC+8, no DST) is 00:30 UTC.
    assert is_open(SHANGHAI, utc("2026-12-07T00:30:00"))
    assert not is_open(SHANGHAI, utc("2026-12-07T00:29:00"))
    assert not is_open(SHANGHAI, utc("2026-12-07T10:00:00"))  # 18:00 local


def test_holidays_are_closed_all_day_and_ranges_are_inclusive() -> None:
    assert not is_open(SHANGHAI, at("Asia/Shanghai", "2026-01-01T10:00"))  # a Thursday
    for day in range(1, 8):
        assert not is_open(SHANGHAI, at("Asia/Shanghai", f"2026-10-0{day}T10:00"))
    assert is_open(SHANGHAI, at("Asia/Shanghai", "2026-10-08T10:00"))  # Thursday after


def test_make_up_working_days_open_on_a_weekend_with_workday_hours() -> None:
    assert is_open(SHANGHAI, at("Asia/Shanghai", "2026-09-27T08:30"))  # a Sunday
    assert not is_open(SHANGHAI, at("Asia/Shanghai", "2026-09-27T18:00"))
    assert is_open(SHANGHAI, at("Asia/Shanghai", "2026-10-10T12:30"))  # Saturday, no lunch gap
    assert not is_open(SHANGHAI, at("Asia/Shanghai", "2026-10-17T10:00"))  # a plain Saturday
    custom = Schedule(
        timezone="Asia/Shanghai", workdays=("2026-09-27",), workday_hours=("10:00-12:00",)
    )
    assert not is_open(custom, at("Asia/Shanghai", "2026-09-27T09:00"))
    assert is_open(custom, at("Asia/Shanghai", "2026-09-27T11:00"))


def test_hours_follow_daylight_saving_time() -> None:
    # Berlin: 09:00 is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST).
    assert is_open(BERLIN, utc("2026-01-05T08:00:00"))
    assert not is_open(BERLIN, utc("2026-01-05T07:59:59"))
    assert is_open(BERLIN, utc("2026-07-06T07:00:00"))
    assert not is_open(BERLIN, utc("2026-07-06T06:59:59"))
    assert not is_open(BERLIN, utc("2026-07-06T15:00:00"))  # 17:00 CEST


def test_the_missing_hour_of_spring_forward_is_handled() -> None:
    night = Schedule(timezone="Europe/Berlin", hours=WeekHours(sun=["01:00-05:00"]))
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    assert is_open(night, utc("2026-03-29T00:59:00"))  # 01:59 CET
    assert is_open(night, utc("2026-03-29T01:00:00"))  # 03:00 CEST
    assert not is_open(night, utc("2026-03-29T03:00:00"))  # 05:00 CEST


def test_whole_day_interval_ends_at_24_00() -> None:
    always = Schedule(timezone="Asia/Shanghai", hours=WeekHours(sat=["00:00-24:00"]))
    assert is_open(always, at("Asia/Shanghai", "2026-12-12T00:00"))
    assert is_open(always, at("Asia/Shanghai", "2026-12-12T23:59:59"))
    assert not is_open(always, at("Asia/Shanghai", "2026-12-13T00:00"))


def test_next_change_is_the_next_opening_or_closing() -> None:
    monday_9 = at("Asia/Shanghai", "2026-12-07T09:00")
    assert next_change(SHANGHAI, monday_9) == at("Asia/Shanghai", "2026-12-07T18:00")
    monday_19 = at("Asia/Shanghai", "2026-12-07T19:00")
    assert next_change(SHANGHAI, monday_19) == at("Asia/Shanghai", "2026-12-08T08:30")
    friday_11 = at("Asia/Shanghai", "2026-12-11T11:00")
    assert next_change(SHANGHAI, friday_11) == at("Asia/Shanghai", "2026-12-11T12:00")
    # Closed from Wednesday 30 September through the National Day week to Thursday 8 October.
    before_holidays = at("Asia/Shanghai", "2026-09-30T18:00")
    assert next_change(SHANGHAI, before_holidays) == at("Asia/Shanghai", "2026-10-08T08:30")


def test_next_change_across_a_dst_change_uses_the_new_offset() -> None:
    friday_evening = utc("2026-03-27T16:00:00")  # 17:00 CET, closed
    assert next_change(BERLIN, friday_evening) == utc("2026-03-30T07:00:00")  # 09:00 CEST


def test_next_change_joins_openings_that_meet_at_midnight() -> None:
    night = Schedule(
        timezone="Asia/Shanghai", hours=WeekHours(fri=["22:00-24:00"], sat=["00:00-06:00"])
    )
    friday_23 = at("Asia/Shanghai", "2026-12-11T23:00")
    assert is_open(night, friday_23)
    assert next_change(night, friday_23) == at("Asia/Shanghai", "2026-12-12T06:00")


def test_next_change_is_none_for_a_schedule_that_never_changes() -> None:
    never = Schedule(timezone="Asia/Shanghai")
    assert next_change(never, utc("2026-01-01T00:00:00")) is None
    day = ["00:00-24:00"]
    always = Schedule(
        timezone="UTC",
        hours=WeekHours(mon=day, tue=day, wed=day, thu=day, fri=day, sat=day, sun=day),
    )
    assert next_change(always, utc("2026-01-01T00:00:00"), horizon_days=30) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("08:30-18:00", (30600, 64800)), ("8:30-9:00", (30600, 32400)), ("00:00-24:00", (0, 86400))],
)
def test_intervals_parse_to_seconds_of_the_day(text: str, expected: tuple[int, int]) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("22:00-06:00", "may not cross midnight"),  # refused, not wrapped: split it at 24:00
        ("09:00-09:00", "start must be before end"),
        ("08:60-09:00", "is not a time of day"),
        ("24:30-25:00", "is not a time of day"),
        ("0830-1800", 'expected "HH:MM-HH:MM"'),
        ("08:30", 'expected "HH:MM-HH:MM"'),
    ],
)
def test_bad_intervals_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_interval(text)


def test_dates_and_inclusive_ranges_parse() -> None:
    assert parse_dates("2026-10-01") == [dt.date(2026, 10, 1)]
    assert len(parse_dates("2026-10-01..2026-10-07")) == 7
    assert parse_dates("2026-12-31..2027-01-01") == [dt.date(2026, 12, 31), dt.date(2027, 1, 1)]
    for bad in ("2026-02-30", "2026/10/01", "2026-10-07..2026-10-01", "2026-01-01..2028-01-01"):
        with pytest.raises(ValueError):
            parse_dates(bad)


def test_schedule_problems_name_each_bad_part() -> None:
    schedule = Schedule(
        timezone="Asia/Shangai",
        hours=WeekHours(mon=("08:00-12:00", "11:00-13:00"), tue=("18:00-08:00",)),
        holidays=("2026-10-01..2026-10-07", "2026-13-01"),
        workdays=("2026-10-03",),
        workday_hours=("9-17",),
    )
    problems = schedule_problems(schedule)
    assert [path for path, _ in problems] == [
        ("timezone",),
        ("hours", "mon", 1),
        ("hours", "tue", 0),
        ("workday_hours", 0),
        ("holidays", 1),
        ("workdays", 0),
    ]
    assert problems[0][1] == "unknown time zone 'Asia/Shangai'"
    assert problems[1][1] == "'11:00-13:00' overlaps '08:00-12:00'"
    assert problems[5][1] == "2026-10-03 is also a holiday (holidays[0])"


def test_a_valid_schedule_has_no_problems() -> None:
    assert schedule_problems(SHANGHAI) == []
    assert schedule_problems(BERLIN) == []
