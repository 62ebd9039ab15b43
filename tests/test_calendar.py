"""Business time: working hours, lunch break, Chinese holidays and make-up working days (调休)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from engine.time import calendar as calendar_module
from engine.time.calendar import BusinessCalendar, CalendarConfig, CalendarOverrides, chinese_year
from engine.time.durations import BusinessDuration, parse_duration

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
NO_SITE_FILE = CalendarOverrides()
CAL = BusinessCalendar(CalendarConfig(), overrides=NO_SITE_FILE)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


def days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback warning is once per year and process; give each test its own process view."""
    monkeypatch.setattr(calendar_module, "_warned_years", set())


# -- working hours --------------------------------------------------------------------------------
def test_the_default_working_day_is_seven_and_a_half_hours() -> None:
    assert CAL.day_seconds == int(7.5 * 3600)


def test_the_lunch_break_does_not_count() -> None:
    assert CAL.add(at(2025, 9, 22, 11, 0), parse_duration("2h")) == at(2025, 9, 22, 14, 30)


def test_time_running_out_at_noon_ends_at_noon_not_after_lunch() -> None:
    assert CAL.add(at(2025, 9, 22, 11, 0), parse_duration("1h")) == at(2025, 9, 22, 12, 0)


def test_one_day_from_opening_ends_at_closing_the_same_day() -> None:
    assert CAL.add(at(2025, 9, 22, 9, 0), parse_duration("1d")) == at(2025, 9, 22, 18, 0)


def test_one_day_from_mid_morning_ends_mid_morning_next_working_day() -> None:
    assert CAL.add(at(2025, 9, 22, 10, 15), parse_duration("1d")) == at(2025, 9, 23, 10, 15)


def test_counting_starts_at_opening_when_started_before_hours() -> None:
    assert CAL.add(at(2025, 9, 22, 7, 0), parse_duration("1h")) == at(2025, 9, 22, 10, 0)


def test_counting_starts_after_lunch_when_started_during_lunch() -> None:
    assert CAL.add(at(2025, 9, 22, 12, 45), parse_duration("30m")) == at(2025, 9, 22, 14, 0)


def test_counting_continues_next_working_morning_when_started_after_hours() -> None:
    assert CAL.add(at(2025, 9, 22, 20, 0), parse_duration("1h")) == at(2025, 9, 23, 10, 0)


def test_weekends_are_skipped() -> None:
    friday_5pm = at(2025, 9, 19, 17, 0)
    assert CAL.add(friday_5pm, parse_duration("2h")) == at(2025, 9, 22, 10, 0)


def test_counting_started_on_a_weekend_begins_monday_morning() -> None:
    assert CAL.add(at(2025, 9, 20, 11, 0), parse_duration("30m")) == at(2025, 9, 22, 9, 30)


def test_durations_can_be_given_as_seconds_or_timedelta() -> None:
    start = at(2025, 9, 22, 11, 0)
    expected = at(2025, 9, 22, 14, 30)
    assert CAL.add(start, 7200) == CAL.add(start, timedelta(hours=2)) == expected


def test_a_zero_or_negative_duration_is_due_at_the_start() -> None:
    start = at(2025, 9, 20, 11, 0)  # a Saturday: no rounding to working hours either
    assert CAL.add(start, BusinessDuration()) == start
    assert CAL.add(start, -60) == start


def test_fractions_of_a_second_are_kept() -> None:
    start = at(2025, 9, 22, 11, 59, 59).replace(microsecond=250_000)
    assert CAL.add(start, 1) == at(2025, 9, 22, 13, 30, 0).replace(microsecond=250_000)


def test_something_other_than_a_duration_is_refused() -> None:
    with pytest.raises(TypeError, match="duration"):
        CAL.add(at(2025, 9, 22, 9, 0), "2h")  # type: ignore[arg-type]


def test_a_calendar_without_any_working_day_gives_up_with_a_reason() -> None:
    cal = BusinessCalendar(CalendarConfig(working_weekdays=[], use_chinese_holidays=False), overrides=NO_SITE_FILE)
    with pytest.raises(ValueError, match="ten years"):
        cal.add(at(2025, 9, 22, 9, 0), 60)


# -- Chinese holidays and make-up working days ----------------------------------------------------
def test_a_make_up_sunday_before_national_day_is_a_working_day() -> None:
    # 2025-09-28 (Sunday) is a 调休 working day; Friday 17:00 + 8h: 1 h on Friday, 7 h on Sunday
    assert CAL.is_working_day(date(2025, 9, 28))
    assert CAL.add(at(2025, 9, 26, 17, 0), parse_duration("8h")) == at(2025, 9, 28, 17, 30)


def test_the_national_day_week_is_skipped_and_work_resumes_on_the_ninth() -> None:
    for day in days(date(2025, 10, 1), date(2025, 10, 8)):
        assert not CAL.is_working_day(day), day
    # Tuesday 30 September 17:00 + one business day: 1 h that evening, the rest on Thursday 9 October
    assert CAL.add(at(2025, 9, 30, 17, 0), parse_duration("1d")) == at(2025, 10, 9, 17, 0)


def test_the_make_up_saturday_after_national_day_counts() -> None:
    assert CAL.is_working_day(date(2025, 10, 11))
    assert CAL.between(at(2025, 10, 10, 9, 0), at(2025, 10, 13, 9, 0)) == 2 * 27000


def test_spring_festival_2026_is_not_working_time() -> None:
    for day in days(date(2026, 2, 15), date(2026, 2, 23)):
        assert not CAL.is_working_day(day), day
    assert CAL.between(at(2026, 2, 15, 0, 0), at(2026, 2, 24, 0, 0)) == 0


def test_the_make_up_saturday_before_spring_festival_2026_counts() -> None:
    assert CAL.add(at(2026, 2, 13, 17, 0), parse_duration("2h")) == at(2026, 2, 14, 10, 0)
    assert CAL.add(at(2026, 2, 14, 17, 0), parse_duration("2h")) == at(2026, 2, 24, 10, 0)


def test_the_default_calendar_agrees_with_chinese_calendar_on_every_day_it_knows() -> None:
    cal = BusinessCalendar(overrides=NO_SITE_FILE)
    wrong = [d for d in days(date(2004, 1, 1), date(2026, 12, 31))
             if cal.is_working_day(d) != chinese_calendar.is_workday(d)]
    assert wrong == []


def test_a_six_day_week_keeps_its_saturdays_but_not_the_national_day() -> None:
    cal = BusinessCalendar(CalendarConfig(working_weekdays=[0, 1, 2, 3, 4, 5]), overrides=NO_SITE_FILE)
    assert cal.is_working_day(date(2025, 9, 20))  # an ordinary Saturday
    assert not cal.is_working_day(date(2025, 10, 4))  # a Saturday inside the National Day week
    assert not cal.is_working_day(date(2025, 10, 1))


# -- years chinese-calendar does not know ---------------------------------------------------------
@pytest.mark.usefixtures("fresh_warnings")
def test_years_the_package_does_not_know_fall_back_to_holidays_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="svcflow.calendar"):
        cal = BusinessCalendar(CalendarConfig(), overrides=NO_SITE_FILE)
        assert not cal.is_working_day(date(2027, 1, 1))  # New Year, from `holidays`
        assert cal.is_working_day(date(2027, 1, 4))
        assert not cal.is_working_day(date(2027, 1, 9))  # Saturday
        assert not cal.is_working_day(date(2027, 2, 8))  # Spring Festival, from `holidays`
        cal.add(at(2026, 12, 30, 17, 0), parse_duration("5d"))
        cal.between(at(2027, 1, 1, 0, 0), at(2027, 12, 31, 0, 0))
        BusinessCalendar(CalendarConfig(), overrides=NO_SITE_FILE).add(at(2027, 3, 1, 9, 0), parse_duration("30d"))
    warnings = [r for r in caplog.records if "2027" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


@pytest.mark.usefixtures("fresh_warnings")
def test_known_years_log_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="svcflow.calendar"):
        cal = BusinessCalendar(CalendarConfig(), overrides=NO_SITE_FILE)
        cal.between(at(2025, 1, 1, 0, 0), at(2026, 12, 31, 0, 0))
    assert caplog.records == []


def test_a_case_opened_late_december_2026_gets_a_deadline_in_2027() -> None:
    # Wed 30 Dec 17:00: 1 h, Thu 31 Dec 7.5 h, Fri 1 Jan 2027 New Year, then Mon 4 to Thu 7 January
    assert CAL.add(at(2026, 12, 30, 17, 0), parse_duration("5d")) == at(2027, 1, 7, 17, 0)


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_fallback_gives_the_official_working_days_where_both_know_the_year(year: int) -> None:
    official = chinese_year(year)
    estimated = calendar_module._estimated_year(year)
    assert official.official and not estimated.official
    assert estimated.make_up_days == official.make_up_days

    def works(schedule: calendar_module.ChineseYear, day: date) -> bool:
        return day in schedule.make_up_days or (day not in schedule.days_off and day.weekday() < 5)

    differ = [d for d in days(date(year, 1, 1), date(year, 12, 31)) if works(estimated, d) != works(official, d)]
    assert differ == []


# -- overrides ------------------------------------------------------------------------------------
def test_configured_days_add_a_make_up_saturday_and_a_holiday() -> None:
    config = CalendarConfig(workdays=[date(2027, 2, 20)], holidays=[date(2025, 9, 23)])
    cal = BusinessCalendar(config, overrides=NO_SITE_FILE)
    assert cal.is_working_day(date(2027, 2, 20))  # a Saturday made a working day
    assert not cal.is_working_day(date(2025, 9, 23))  # a Tuesday made a holiday
    assert cal.add(at(2025, 9, 22, 17, 0), parse_duration("2h")) == at(2025, 9, 24, 10, 0)


def test_configured_days_override_the_official_schedule() -> None:
    config = CalendarConfig(workdays=[date(2025, 10, 1)], holidays=[date(2025, 9, 28)])
    cal = BusinessCalendar(config, overrides=NO_SITE_FILE)
    assert cal.is_working_day(date(2025, 10, 1)) and not cal.is_working_day(date(2025, 9, 28))


def test_a_site_calendar_file_applies_to_every_process(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "calendar.yaml"
    path.write_text("holidays: [2025-09-24]\nworkdays: [2025-09-27]\n", encoding="utf-8")
    monkeypatch.setenv("SVCFLOW_CALENDAR_FILE", str(path))
    cal = BusinessCalendar(CalendarConfig())
    assert not cal.is_working_day(date(2025, 9, 24)) and cal.is_working_day(date(2025, 9, 27))


def test_a_definitions_own_days_win_over_the_site_file() -> None:
    site = CalendarOverrides(holidays=[date(2025, 9, 24)])
    cal = BusinessCalendar(CalendarConfig(workdays=[date(2025, 9, 24)]), overrides=site)
    assert cal.is_working_day(date(2025, 9, 24))


def test_a_date_both_holiday_and_workday_is_refused() -> None:
    with pytest.raises(ValueError, match="2025-09-24 listed both"):
        CalendarConfig(workdays=[date(2025, 9, 24)], holidays=[date(2025, 9, 24)])


# -- between --------------------------------------------------------------------------------------
def test_between_is_the_inverse_of_add() -> None:
    for start in (at(2025, 9, 25, 10, 17), at(2025, 9, 26, 19, 0), at(2025, 9, 30, 17, 0), at(2026, 2, 13, 12, 5)):
        for seconds in (1, 60, 3600, 10800, 27000, 5 * 27000 + 1234, 60 * 27000):
            assert CAL.between(start, CAL.add(start, seconds)) == seconds, (start, seconds)


def test_between_counts_only_working_periods() -> None:
    assert CAL.between(at(2025, 9, 22, 8, 0), at(2025, 9, 22, 20, 0)) == 27000
    assert CAL.between(at(2025, 9, 22, 11, 30), at(2025, 9, 22, 14, 0)) == 3600


def test_between_is_zero_backwards() -> None:
    assert CAL.between(at(2025, 9, 23, 10, 0), at(2025, 9, 22, 10, 0)) == 0


def test_between_a_whole_year_is_the_working_days_times_the_day() -> None:
    working_days = sum(chinese_calendar.is_workday(d) for d in days(date(2025, 1, 1), date(2025, 12, 31)))
    assert CAL.between(at(2025, 1, 1, 0, 0), at(2026, 1, 1, 0, 0)) == working_days * 27000


# -- time zones -----------------------------------------------------------------------------------
def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        CAL.add(datetime(2025, 9, 22, 9, 0), 60)
    with pytest.raises(ValueError, match="time zone"):
        CAL.between(datetime(2025, 9, 22, 9, 0), at(2025, 9, 22, 10, 0))
    with pytest.raises(ValueError, match="time zone"):
        CAL.next_working_instant(datetime(2025, 9, 22, 9, 0))


def test_results_are_in_the_calendar_zone_whatever_the_input_zone() -> None:
    utc_start = datetime(2025, 9, 22, 1, 0, tzinfo=ZoneInfo("UTC"))  # 09:00 in Shanghai
    result = CAL.add(utc_start, 3600)
    assert result == at(2025, 9, 22, 10, 0) and result.tzinfo == SH


def test_another_time_zone_without_chinese_holidays() -> None:
    config = CalendarConfig(timezone="Europe/Berlin", working_hours=["08:00-16:00"], use_chinese_holidays=False)
    cal = BusinessCalendar(config, overrides=NO_SITE_FILE)
    assert cal.day_seconds == 8 * 3600
    assert cal.is_working_day(date(2025, 10, 1))  # a Chinese holiday, not a Berlin one
    assert cal.add(datetime(2025, 10, 1, 15, 0, tzinfo=BERLIN), 7200) == datetime(2025, 10, 2, 9, 0, tzinfo=BERLIN)
    assert cal.add(datetime(2025, 10, 1, 15, 0, tzinfo=BERLIN), 7200).tzinfo == BERLIN


def test_working_hours_are_wall_clock_hours_across_a_daylight_saving_change() -> None:
    config = CalendarConfig(timezone="Europe/Berlin", working_hours=["08:00-16:00"], use_chinese_holidays=False)
    cal = BusinessCalendar(config, overrides=NO_SITE_FILE)
    friday = datetime(2025, 3, 28, 15, 0, tzinfo=BERLIN)  # CET; clocks go forward on Sunday 30 March
    monday = datetime(2025, 3, 31, 9, 0, tzinfo=BERLIN)  # CEST
    assert cal.add(friday, 7200) == monday
    assert monday.utcoffset() == timedelta(hours=2)
    assert cal.between(friday, monday) == 7200


# -- next working instant -------------------------------------------------------------------------
def test_inside_working_hours_the_next_working_instant_is_now() -> None:
    assert CAL.next_working_instant(at(2025, 9, 22, 10, 0)) == at(2025, 9, 22, 10, 0)


def test_during_lunch_the_next_working_instant_is_the_afternoon_opening() -> None:
    assert CAL.next_working_instant(at(2025, 9, 22, 12, 30)) == at(2025, 9, 22, 13, 30)


def test_at_closing_time_the_next_working_instant_is_the_next_working_morning() -> None:
    assert CAL.next_working_instant(at(2025, 9, 22, 18, 0)) == at(2025, 9, 23, 9, 0)
    assert CAL.next_working_instant(at(2025, 9, 30, 19, 0)) == at(2025, 10, 9, 9, 0)


# -- configuration --------------------------------------------------------------------------------
@pytest.mark.parametrize("hours", [
    ["9-12"], ["12:00-09:00"], ["09:00-12:00", "11:00-13:00"], ["13:00-14:00", "09:00-12:00"], ["09:00-25:00"],
    ["09:60-10:00"], [],
])
def test_bad_working_hours_are_refused(hours: list[str]) -> None:
    with pytest.raises(ValueError, match="working hours"):
        CalendarConfig(working_hours=hours)


def test_working_hours_may_end_at_midnight() -> None:
    cal = BusinessCalendar(CalendarConfig(working_hours=["20:00-24:00"], use_chinese_holidays=False),
                           overrides=NO_SITE_FILE)
    assert cal.add(at(2025, 9, 22, 20, 0), parse_duration("4h")) == at(2025, 9, 23, 0, 0)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="IANA"):
        CalendarConfig(timezone="Mars/Olympus")


def test_weekdays_outside_monday_to_sunday_are_refused() -> None:
    with pytest.raises(ValueError, match="0 \\(Monday\\) to 6"):
        CalendarConfig(working_weekdays=[7])


def test_adding_many_days_steps_over_whole_days() -> None:
    """Not a timing test: the whole-day skip keeps a year of business days a short loop."""
    due = CAL.add(at(2025, 1, 2, 9, 0), timedelta(hours=7.5 * 240))
    assert due.year == 2025 and due.month >= 11
    assert CAL.between(at(2025, 1, 2, 9, 0), due) == 240 * 27000
