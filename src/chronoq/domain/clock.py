"""Time: an injectable clock, and helpers that refuse naive datetimes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where "now" comes from; tests inject a fake one."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def check_aware(value: datetime, name: str = "datetime") -> datetime:
    """Return ``value`` in UTC, refusing naive datetimes (their meaning is a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch: how the stores keep instants (exact, sortable)."""
    value = check_aware(value)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """The inverse of ``to_micros``."""
    return _EPOCH + timedelta(microseconds=value)


def now_micros() -> int:
    """The wall clock in epoch microseconds, cheaply (hot paths)."""
    return time.time_ns() // 1_000


def format_rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` and microseconds trimmed to milliseconds when exact."""
    v = check_aware(value)
    base = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if v.microsecond % 1000 == 0:
        return f"{base}.{v.microsecond // 1000:03d}Z"
    return f"{base}.{v.microsecond:06d}Z"


def parse_rfc3339(text: str) -> datetime:
    """Parse RFC 3339 (``Z`` or an offset required); raise ``ValueError`` otherwise."""
    if not isinstance(text, str) or len(text) < 20 or text[10] not in "Tt ":
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    s = text[:-1] + "+00:00" if text[-1] in "Zz" else text
    value = datetime.fromisoformat(s)
    if value.tzinfo is None:
        raise ValueError(f"RFC 3339 needs a 'Z' or an offset: {text!r}")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp out of range: {text!r}") from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
