"""Time helpers: exact microsecond instants, no naive datetimes, RFC 3339 in and out."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronoq.domain.clock import (
    SystemClock,
    check_aware,
    format_rfc3339,
    from_micros,
    now_micros,
    parse_rfc3339,
    to_micros,
)

# Wide, but far enough from year 1 and 9999 that any UTC offset stays representable.
aware = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.one_of(
        st.just(UTC),
        st.timezones(),
        st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
            lambda m: timezone(timedelta(minutes=m))
        ),
    ),
)
MICROS_MIN = to_micros(datetime(2, 1, 1, tzinfo=UTC))
MICROS_MAX = to_micros(datetime(9998, 12, 31, tzinfo=UTC))


def test_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert abs(now.timestamp() - time.time()) < 5


def test_now_micros_is_the_wall_clock() -> None:
    assert abs(now_micros() - time.time() * 1e6) < 5e6


def test_epoch_and_known_instants() -> None:
    assert to_micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005
    assert to_micros(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == -1
    assert from_micros(-1) == datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    # Same instant, other zone: same number.
    berlin = datetime(2026, 7, 1, 14, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert to_micros(berlin) == to_micros(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))


@given(aware)
def test_micros_round_trip_is_exact(value: datetime) -> None:
    back = from_micros(to_micros(value))
    # Compared in UTC: PEP 495 makes a local time in a DST fold or gap unequal to every
    # instant of another zone, even its own UTC conversion.
    assert back == value.astimezone(UTC)
    assert back.tzinfo is UTC
    assert back.utcoffset() == timedelta(0)


@given(st.integers(min_value=MICROS_MIN, max_value=MICROS_MAX))
def test_from_micros_then_to_micros_is_the_identity(value: int) -> None:
    assert to_micros(from_micros(value)) == value


@given(aware, aware)
def test_micros_preserve_order(a: datetime, b: datetime) -> None:
    assert (to_micros(a) < to_micros(b)) == (a < b)


def test_check_aware_converts_to_utc() -> None:
    value = datetime(2026, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    got = check_aware(value)
    assert got == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert got.tzinfo is UTC


def test_to_micros_refuses_naive_and_offsetless_datetimes() -> None:
    class NoOffset(tzinfo):
        def utcoffset(self, _dt: datetime | None) -> timedelta | None:
            return None

    with pytest.raises(ValueError, match="must be timezone-aware"):
        to_micros(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="must be timezone-aware"):
        to_micros(datetime(2026, 1, 1, tzinfo=NoOffset()))


def test_check_aware_refuses_naive() -> None:
    with pytest.raises(ValueError, match="next_fire_at must be timezone-aware"):
        check_aware(datetime(2026, 1, 1), "next_fire_at")


class _NoOffset(tzinfo):
    """A tzinfo that answers None: as naive as no tzinfo at all."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


def test_check_aware_refuses_a_tzinfo_without_offset() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_aware(datetime(2026, 1, 1, tzinfo=_NoOffset()))


def test_to_micros_refuses_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        to_micros(datetime(2026, 1, 1))


# -- RFC 3339 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02t03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02 03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05.250Z", datetime(2026, 1, 2, 3, 4, 5, 250_000, tzinfo=UTC)),
        ("2026-01-02T03:04:05.123456Z", datetime(2026, 1, 2, 3, 4, 5, 123_456, tzinfo=UTC)),
        ("2026-01-02T03:04:05+00:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-01T22:34:05-04:30", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05-00:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    got = parse_rfc3339(text)
    assert got == expected
    assert got.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02T03:04:05",  # no offset
        "2026-01-02T03:04:05.123456",  # no offset, long enough to reach fromisoformat
        "2026-01-02",
        "",
        "garbage",
        "not a timestamp at all, really",
        "2026-13-01T00:00:00Z",  # month 13
        "2026-02-30T00:00:00Z",
        "2026-01-02T24:00:01Z",
        "2026-01-02X03:04:05Z",
        "2026-01-02T03:04:05Q",
    ],
)
def test_parse_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


@pytest.mark.parametrize("value", [None, 1_700_000_000, b"2026-01-02T03:04:05Z"])
def test_parse_rfc3339_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 250_000, tzinfo=UTC), "2026-01-02T03:04:05.250Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 123_456, tzinfo=UTC), "2026-01-02T03:04:05.123456Z"),
        (
            datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-02T03:04:05.000Z",
        ),
    ],
)
def test_format_rfc3339(value: datetime, text: str) -> None:
    assert format_rfc3339(value) == text


def test_format_rfc3339_refuses_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_rfc3339(datetime(2026, 1, 1))


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
    )
)
def test_format_then_parse_round_trips(value: datetime) -> None:
    text = format_rfc3339(value)
    assert text.endswith("Z")
    assert parse_rfc3339(text) == value


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_parse_rfc3339_out_of_range_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_format_rfc3339_pads_years_below_1000() -> None:
    value = datetime(999, 1, 1, tzinfo=UTC)
    assert format_rfc3339(value) == "0999-01-01T00:00:00.000Z"
    assert parse_rfc3339(format_rfc3339(value)) == value
