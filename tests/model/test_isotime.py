"""ISO-8601 as requests write it: the planner's reading of durations and intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from execbroker.model.isotime import (
    format_duration,
    format_instant,
    parse_duration,
    parse_instant,
    parse_interval,
)

T10 = datetime(2030, 1, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2030-01-01T10:00:00Z/PT3H", T10, T10 + timedelta(hours=3)),
        ("2030-01-01T10:00:00Z/2030-01-01T12:00:00Z", T10, T10 + timedelta(hours=2)),
        ("PT2H/2030-01-01T12:00:00Z", T10, T10 + timedelta(hours=2)),
        ("2030-01-01/2030-01-02", T10 - timedelta(hours=10), T10 + timedelta(hours=14)),
        ("2030-01-01T11:00:00+01:00/PT1H", T10, T10 + timedelta(hours=1)),
        ("2030-01-01T10:00:00/PT1H", T10, T10 + timedelta(hours=1)),  # no zone: UTC
    ],
)
def test_intervals(text: str, start: datetime, end: datetime) -> None:
    interval = parse_interval(text)
    assert (interval.start, interval.end) == (start, end)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2030-01-01T10:00:00Z", "not an ISO-8601 interval"),
        ("PT1H/PT2H", "two durations"),
        ("2030-01-02T00:00:00Z/2030-01-01T00:00:00Z", "ends before it starts"),
        ("2030-01-01T10:00:00Z/-PT1H", "negative"),
        ("soon/later", "not an ISO-8601 date-time"),
        ("a/b/c", "not an ISO-8601 interval"),
    ],
)
def test_bad_intervals_say_why(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_interval(text)


def test_durations_with_months_count_from_the_anchor() -> None:
    assert parse_duration("P1M", anchor=datetime(2030, 2, 1, tzinfo=UTC)) == timedelta(days=28)
    assert parse_duration("P1W") == timedelta(weeks=1)
    with pytest.raises(ValueError, match="not an ISO-8601 duration"):
        parse_duration("90 minutes")


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)))
def test_durations_round_trip(span: timedelta) -> None:
    assert parse_duration(format_duration(span)) == span


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(2000, 1, 1)))  # noqa: DTZ001 - hypothesis wants naive bounds
def test_instants_round_trip(moment: datetime) -> None:
    assert parse_instant(format_instant(moment)) == moment


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:59:59Z/PT1H",
        "9999-12-31T23:00:00Z/PT1H1S",
        "9999-12-31T23:59:59-01:00/PT1H",
        "0001-01-01T00:00:00+01:00/PT1H",
        "P1D/0001-01-01T12:00:00Z",
        "P1000000D/2030-01-01T00:00:00Z",
        "2030-01-01T00:00:00Z/P3000000D",
        "9999-12-31T23:59:59-14:00/9999-12-31T23:59:59Z",
    ],
)
def test_intervals_leaving_years_1_to_9999_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError, match="outside the years 1 to 9999"):
        parse_interval(text)


def test_instants_within_years_1_to_9999_in_utc_still_parse() -> None:
    assert parse_instant("9999-12-31T23:59:59+14:00").year == 9999
    assert parse_instant("0001-01-01T23:00:00-00:30").year == 1
    assert parse_interval("9999-12-31T22:00:00Z/PT1H").end.hour == 23


def test_errors_quote_only_the_start_of_a_long_text() -> None:
    for parse in (parse_interval, parse_instant, parse_duration):
        with pytest.raises(ValueError, match="P999") as caught:
            parse("P" + "9" * 60_000)
        assert len(str(caught.value)) < 200
