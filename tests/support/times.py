"""Wall-clock helpers over ``chronoq.domain.clock``'s RFC 3339 (the API's own format)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chronoq.domain.clock import format_rfc3339, parse_rfc3339


def utcnow() -> datetime:
    return datetime.now(UTC)


def at(seconds_from_now: float) -> str:
    """An RFC 3339 ``next_fire_at`` this many seconds from now."""
    return format_rfc3339(utcnow() + timedelta(seconds=seconds_from_now))


def parse_ts(value: str) -> datetime:
    """Parse a timestamp as the API returns it: RFC 3339 in UTC with ``Z`` (asserted)."""
    assert isinstance(value, str) and value.endswith("Z"), f"not RFC 3339 UTC with Z: {value!r}"
    return parse_rfc3339(value)
