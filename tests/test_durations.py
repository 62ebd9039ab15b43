"""Business durations as designers write them in process definitions."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import BaseModel, ValidationError

from engine.time.durations import DURATION_PATTERN, BusinessDuration, DurationError, DurationText, parse_duration

DAY = 27000  # the default calendar's working day: 7.5 h


@pytest.mark.parametrize(("text", "days", "seconds"), [
    ("2h", 0, 7200), ("30m", 0, 1800), ("5d", 5, 0), ("1d 4h", 1, 14400), ("1d4h30m", 1, 16200), ("90s", 0, 90),
    ("0m", 0, 0), ("25h", 0, 90000), (" 1d  2h ", 1, 7200),
])
def test_durations_read_days_hours_minutes_seconds(text: str, days: int, seconds: int) -> None:
    assert parse_duration(text) == BusinessDuration(days, seconds)


@pytest.mark.parametrize("text", ["2h", "1d 4h", "1d 4h 30m", "0m", "45s", "3d 1s", "12h 5m"])
def test_canonical_texts_round_trip(text: str) -> None:
    assert str(parse_duration(text)) == text


def test_every_duration_prints_as_text_that_reads_back_the_same() -> None:
    for days in (0, 1, 7):
        for seconds in (0, 1, 59, 60, 3599, 3600, 3661, 26999, 27000, 90061):
            duration = BusinessDuration(days, seconds)
            assert parse_duration(str(duration)) == duration


def test_minutes_beyond_an_hour_print_in_hours_and_minutes() -> None:
    assert str(parse_duration("90m")) == "1h 30m"


@pytest.mark.parametrize("text", [
    "2 hours", "h", "", "   ", "5", "-1h", "2w", "1.5h", "2H", "1 d", "30m 2h", "1h 1h", "1d,4h", "P1D",
])
def test_unreadable_durations_name_the_text_and_say_what_to_write(text: str) -> None:
    with pytest.raises(DurationError, match='write e.g. "2h", "30m", "5d" or "1d 4h"') as caught:
        parse_duration(text)
    assert f'"{text}"' in str(caught.value)


def test_a_duration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_duration("2 hours")


@pytest.mark.parametrize("value", [2, 2.5, None, ["2h"]])
def test_only_text_is_read_not_bare_numbers(value: object) -> None:
    with pytest.raises(DurationError, match="cannot read"):
        parse_duration(value)  # type: ignore[arg-type]


def test_negative_parts_are_refused() -> None:
    with pytest.raises(DurationError):
        BusinessDuration(-1, 0)


def test_a_day_counts_as_the_calendars_working_day_length() -> None:
    assert parse_duration("1d 4h").total_seconds(DAY) == DAY + 4 * 3600
    assert parse_duration("1d").total_seconds(8 * 3600) == 8 * 3600


def test_scaling_keeps_whole_days_as_days() -> None:
    assert parse_duration("2d").scaled(0.5) == parse_duration("1d")
    assert parse_duration("2d 2h").scaled(0.5) == parse_duration("1d 1h")


def test_scaling_converts_a_part_of_a_day_with_the_day_length() -> None:
    assert parse_duration("1d").scaled(0.5, day_seconds=DAY) == parse_duration("3h 45m")
    assert parse_duration("5d").scaled(0.75, day_seconds=DAY) == BusinessDuration(3, DAY * 3 // 4)


def test_scaling_a_part_of_a_day_without_the_day_length_is_refused() -> None:
    with pytest.raises(ValueError, match="day_seconds"):
        parse_duration("1d").scaled(0.5)


def test_scaling_rounds_to_whole_seconds() -> None:
    assert parse_duration("1h").scaled(0.5) == parse_duration("30m")
    assert parse_duration("10s").scaled(1 / 3) == BusinessDuration(0, 3)


@pytest.mark.parametrize("fraction", [-0.5, float("nan"), float("inf")])
def test_scaling_by_a_negative_or_infinite_fraction_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        parse_duration("2h").scaled(fraction)


class Step(BaseModel):
    target: DurationText


def test_definition_fields_read_duration_text() -> None:
    assert Step.model_validate({"target": "1d 4h"}).target == BusinessDuration(1, 14400)


def test_definition_fields_accept_a_duration_object() -> None:
    assert Step(target=BusinessDuration(0, 60)).target == parse_duration("1m")


def test_definition_fields_write_durations_back_as_text() -> None:
    step = Step.model_validate({"target": "90m"})
    assert step.model_dump() == {"target": "1h 30m"}
    assert json.loads(step.model_dump_json()) == {"target": "1h 30m"}


def test_a_bad_duration_field_reports_the_text_and_the_format() -> None:
    with pytest.raises(ValidationError, match='cannot read "2 hours" as a duration'):
        Step.model_validate({"target": "2 hours"})


def test_the_json_schema_of_a_duration_field_is_a_string_with_the_pattern() -> None:
    schema = Step.model_json_schema()["properties"]["target"]
    assert schema["type"] == "string"
    assert schema["pattern"] == DURATION_PATTERN


@pytest.mark.parametrize(("text", "ok"), [("1d 4h", True), ("1d4h30m", True), ("0m", True), ("2 hours", False),
                                          ("30m 2h", False), ("", False)])
def test_the_schema_pattern_accepts_exactly_what_the_parser_accepts(text: str, ok: bool) -> None:
    assert (re.match(DURATION_PATTERN, text) is not None) is ok
