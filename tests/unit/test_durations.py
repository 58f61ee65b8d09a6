"""Go durations: what ``time.ParseDuration`` accepts (non-negative), and formatting back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chronoq.domain.durations import format_duration, parse_go_duration
from chronoq.errors import ValidationError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2s", timedelta(seconds=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5s", timedelta(seconds=1.5)),
        ("300ms", timedelta(milliseconds=300)),
        ("1h0m0s", timedelta(hours=1)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("90m", timedelta(minutes=90)),
        ("2h45m30.5s", timedelta(hours=2, minutes=45, seconds=30.5)),
        ("1m1m", timedelta(minutes=2)),  # Go adds repeated units up
        (".5s", timedelta(milliseconds=500)),
        ("1.s", timedelta(seconds=1)),
        ("+5s", timedelta(seconds=5)),
        ("250us", timedelta(microseconds=250)),
        ("250µs", timedelta(microseconds=250)),  # U+00B5 micro sign
        ("250μs", timedelta(microseconds=250)),  # U+03BC Greek mu
        ("1500ns", timedelta(microseconds=2)),  # rounded to timedelta's microseconds
        ("1h1m1s1ms1us", timedelta(hours=1, minutes=1, seconds=1, milliseconds=1, microseconds=1)),
    ],
)
def test_accepted_forms(text: str, expected: timedelta) -> None:
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "-1s", "-0", "5", "1x", "s", "1.2.3s", "1h 30m", "1e3s", "h1", "1S", "1H", "ms"],
)
def test_rejected_forms(text: str) -> None:
    with pytest.raises(ValidationError, match="invalid duration"):
        parse_go_duration(text)


def test_negative_durations_say_why() -> None:
    with pytest.raises(ValidationError, match="must not be negative"):
        parse_go_duration("-1s")


def test_a_lone_sign_is_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_go_duration("+")


@pytest.mark.parametrize("text", ["100000000000h", "1" * 400 + "s"])
def test_too_large_is_a_validation_error(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_go_duration(text)


# -- format_duration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=2), "2s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(hours=1), "1h"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(milliseconds=300), "0.3s"),
        (timedelta(days=2), "48h"),
        (timedelta(hours=1, seconds=5), "1h5s"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


millis = st.integers(min_value=0, max_value=10**11).map(lambda ms: timedelta(milliseconds=ms))


@given(millis)
@example(timedelta(hours=1, milliseconds=1))
@example(timedelta(minutes=1, seconds=59, milliseconds=999))
def test_format_then_parse_round_trips_at_millisecond_resolution(value: timedelta) -> None:
    assert parse_go_duration(format_duration(value)) == value


@given(st.integers(min_value=0, max_value=10**7).map(lambda s: timedelta(seconds=s)))
def test_whole_seconds_format_without_a_fraction(value: timedelta) -> None:
    text = format_duration(value)
    assert "." not in text
    assert text == "0s" or not text.startswith("0")


@pytest.mark.parametrize(
    "value", [timedelta(microseconds=1), timedelta(seconds=1, microseconds=234567)]
)
def test_format_then_parse_round_trips_at_microsecond_resolution(value: timedelta) -> None:
    assert parse_go_duration(format_duration(value)) == value
