"""Strict parsers (issue 7): RFC 3339 timestamps and Go durations take nothing more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chronoq.domain.clock import parse_rfc3339
from chronoq.domain.durations import parse_go_duration
from chronoq.errors import ValidationError


@pytest.mark.parametrize(
    "text",
    [
        "2026-W01-1T00:00:00Z",  # ISO week date
        "2026-W011T00:00:00Z",
        "2026-001T00:00:00Z",  # ISO ordinal date
        "20260102T030405Z",  # basic format
        "2026-01-02T03:04:05Z\x00",  # trailing NUL
        "2026-01-02T03:04:05Z ",
        " 2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05+00:00\x00",
        "2026-01-02T03:04Z",  # seconds missing
        "2026-01-02T03:04+00:00",
        "2026-01-02T03:04:05+0000",  # offset without colon
        "2026-01-02T03:04:05+00",
        "2026-01-02T03:04:05+24:00",
        "2026-01-02T03:04:05.Z",
        "2026-01-02T03:04:05,5Z",
        "2026-01-02_03:04:05Z",
        "٢٠٢٦-01-02T03:04:05Z",  # non-ASCII digits
        "2026-01-02T03:04:05.１Z",
        "2026-01-02T03:04:60Z",  # leap second
    ],
)
def test_parse_rfc3339_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02t03:04:05z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02 03:04:05+01:30", datetime(2026, 1, 2, 1, 34, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05.1234567Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2026-01-02T03:04:05.5-00:00", datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339_accepts_the_rfc(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", ["٥s", "²s", "1٥m", "5.٥s", "５s", "𝟓s"])
def test_durations_take_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_go_duration(text)


def test_durations_still_parse_ascii() -> None:
    assert parse_go_duration("1h2m3.5s") == timedelta(hours=1, minutes=2, seconds=3.5)
