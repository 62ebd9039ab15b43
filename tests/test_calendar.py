"""Business time: working hours, lunch break, Chinese holidays and make-up working days (调休)."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine import calendar as calendar_module
from engine.calendar import BusinessCalendar, CalendarConfig
from engine.durations import BusinessDuration, DurationError, parse_duration

SH = ZoneInfo("Asia/Shanghai")
CAL = BusinessCalendar(CalendarConfig(), overrides=None)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


@pytest.mark.parametrize(("text", "days", "seconds"), [
    ("2h", 0, 7200), ("30m", 0, 1800), ("5d", 5, 0), ("1d 4h", 1, 14400), ("1d4h30m", 1, 16200), ("90s", 0, 90),
])
def test_durations_read_days_hours_minutes_seconds(text, days, seconds):
    assert parse_duration(text) == BusinessDuration(days, seconds)


def test_duration_text_round_trips():
    for text in ("2h", "1d 4h", "1d 4h 30m", "0m", "45s"):
        assert str(parse_duration(text)) == text


@pytest.mark.parametrize("text", ["2 hours", "h", "", "5", "-1h", "2w"])
def test_unreadable_durations_say_what_to_write(text):
    with pytest.raises(DurationError, match='write e.g. "2h"'):
        parse_duration(text)


def test_a_business_day_is_the_working_day_length():
    assert CAL.day_seconds == int(7.5 * 3600)
    assert parse_duration("1d").total_seconds(CAL.day_seconds) == 27000


def test_the_lunch_break_does_not_count():
    assert CAL.add(at(2025, 9, 22, 11, 0), parse_duration("2h")) == at(2025, 9, 22, 14, 30)


def test_a_period_boundary_ends_at_the_period_end_not_after_lunch():
    assert CAL.add(at(2025, 9, 22, 11, 0), parse_duration("1h")) == at(2025, 9, 22, 12, 0)


def test_counting_starts_at_opening_when_started_before_hours():
    assert CAL.add(at(2025, 9, 22, 7, 0), parse_duration("1h")) == at(2025, 9, 22, 10, 0)


def test_counting_continues_next_working_morning_when_started_after_hours():
    assert CAL.add(at(2025, 9, 22, 20, 0), parse_duration("1h")) == at(2025, 9, 23, 10, 0)


def test_weekends_are_skipped():
    friday_5pm = at(2025, 9, 19, 17, 0)
    assert CAL.add(friday_5pm, parse_duration("2h")) == at(2025, 9, 22, 10, 0)


def test_a_make_up_sunday_before_national_day_is_a_working_day():
    # 2025-09-28 (Sunday) is a 调休 working day; Friday 17:00 + 8h lands on it
    assert CAL.is_working_day(date(2025, 9, 28))
    assert CAL.add(at(2025, 9, 26, 17, 0), parse_duration("8h")) == at(2025, 9, 28, 17, 30)


def test_the_national_day_week_is_skipped_and_work_resumes_on_the_ninth():
    for day in range(1, 9):
        assert not CAL.is_working_day(date(2025, 10, day)), day
    # Tuesday 30 September 17:00 + one business day: 1 h that evening, the rest on Thursday 9 October
    assert CAL.add(at(2025, 9, 30, 17, 0), parse_duration("1d")) == at(2025, 10, 9, 17, 0)


def test_the_make_up_saturday_after_national_day_counts():
    assert CAL.is_working_day(date(2025, 10, 11))
    assert CAL.between(at(2025, 10, 10, 9, 0), at(2025, 10, 13, 9, 0)) == 2 * 27000


def test_spring_festival_2026_is_not_working_time():
    assert not CAL.is_working_day(date(2026, 2, 17))
    assert CAL.between(at(2026, 2, 16, 9, 0), at(2026, 2, 20, 18, 0)) == 0


def test_between_is_the_inverse_of_add():
    start = at(2025, 9, 25, 10, 17)
    for seconds in (60, 3600, 27000, 5 * 27000 + 1234):
        assert CAL.between(start, CAL.add(start, seconds)) == seconds


def test_between_is_zero_backwards():
    assert CAL.between(at(2025, 9, 23, 10, 0), at(2025, 9, 22, 10, 0)) == 0


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="time zone"):
        CAL.add(datetime(2025, 9, 22, 9, 0), 60)


def test_results_are_in_the_calendar_zone_whatever_the_input_zone():
    utc_start = datetime(2025, 9, 22, 1, 0, tzinfo=ZoneInfo("UTC"))  # 09:00 in Shanghai
    result = CAL.add(utc_start, 3600)
    assert result == at(2025, 9, 22, 10, 0) and result.tzinfo == SH


def test_years_the_package_does_not_know_fall_back_with_one_warning(caplog):
    calendar_module._warned_years.discard(2027)
    cal = BusinessCalendar(CalendarConfig(), overrides=None)
    with caplog.at_level(logging.WARNING, logger="svcflow.calendar"):
        assert not cal.is_working_day(date(2027, 1, 1))  # New Year, from `holidays`
        assert cal.is_working_day(date(2027, 1, 4))
        assert not cal.is_working_day(date(2027, 1, 9))  # Saturday
        cal.add(at(2026, 12, 30, 17, 0), parse_duration("5d"))
    warnings = [r for r in caplog.records if "2027" in r.getMessage()]
    assert len(warnings) == 1


def test_a_case_opened_late_december_2026_gets_a_deadline_in_2027():
    due = CAL.add(at(2026, 12, 30, 17, 0), parse_duration("5d"))
    assert due.year == 2027


def test_overrides_add_a_make_up_day_and_a_holiday():
    config = CalendarConfig(workdays=[date(2027, 2, 6)], holidays=[date(2025, 9, 23)])
    cal = BusinessCalendar(config, overrides=None)
    assert cal.is_working_day(date(2027, 2, 6))  # a Saturday made a working day
    assert not cal.is_working_day(date(2025, 9, 23))


def test_a_site_calendar_file_applies_to_every_process(tmp_path, monkeypatch):
    path = tmp_path / "calendar.yaml"
    path.write_text("holidays: [2025-09-24]\nworkdays: [2025-09-27]\n", encoding="utf-8")
    monkeypatch.setenv("SVCFLOW_CALENDAR_FILE", str(path))
    cal = BusinessCalendar(CalendarConfig())
    assert not cal.is_working_day(date(2025, 9, 24)) and cal.is_working_day(date(2025, 9, 27))


def test_another_time_zone_without_chinese_holidays():
    config = CalendarConfig(timezone="Europe/Berlin", working_hours=["08:00-16:00"], use_chinese_holidays=False)
    cal = BusinessCalendar(config, overrides=None)
    berlin = ZoneInfo("Europe/Berlin")
    assert cal.is_working_day(date(2025, 10, 1))  # a Chinese holiday, not a Berlin one
    assert cal.add(datetime(2025, 10, 1, 15, 0, tzinfo=berlin), 7200) == datetime(2025, 10, 2, 9, 0, tzinfo=berlin)


@pytest.mark.parametrize("hours", [["9-12"], ["12:00-09:00"], ["09:00-12:00", "11:00-13:00"]])
def test_bad_working_hours_are_refused_with_the_format(hours):
    with pytest.raises(ValueError):
        CalendarConfig(working_hours=hours)


def test_unknown_time_zone_is_refused():
    with pytest.raises(ValueError, match="IANA"):
        CalendarConfig(timezone="Mars/Olympus")


def test_next_working_instant():
    assert CAL.next_working_instant(at(2025, 9, 22, 12, 30)) == at(2025, 9, 22, 13, 30)
    assert CAL.next_working_instant(at(2025, 9, 22, 10, 0)) == at(2025, 9, 22, 10, 0)
    assert CAL.next_working_instant(at(2025, 9, 30, 19, 0)) == at(2025, 10, 9, 9, 0)


def test_adding_a_day_over_a_long_holiday_is_still_cheap():
    """Not a timing test: checks the whole-day skip keeps the loop short for a year of days."""
    due = CAL.add(at(2025, 1, 2, 9, 0), timedelta(hours=7.5 * 240))
    assert due.year == 2025 and due.month >= 11
