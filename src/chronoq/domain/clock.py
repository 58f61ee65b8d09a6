"""Time: an injectable clock, and helpers that refuse naive datetimes.

Every role takes a ``Clock`` and asks it for wall time (``now``), for
monotonic time (``monotonic``, for intervals that must not jump), and for
every wait (``sleep``, ``wait``, ``call_later``). Nothing in a role calls
``time`` or ``asyncio.sleep`` directly, so a test can drive a whole role with
``chronoq.testing.FakeClock`` deterministically, without sleeping.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Protocol


class TimerHandle(Protocol):
    """A callback scheduled with ``Clock.call_later``."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Where "now" comes from and how roles wait; tests inject a fake one."""

    def now(self) -> datetime:
        """The current wall time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (trust windows, rate limits, intervals)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait until ``event`` is set or ``seconds`` pass; True if it was set."""
        ...

    def call_later(self, seconds: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` on the event loop after ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clocks and the running event loop."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        if seconds <= 0:
            return False
        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives in
        # the same loop turn as the event (a role stopped right after its wakeup was set
        # would never stop). asyncio.wait lets the cancellation through.
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()
        return event.is_set()

    def call_later(self, seconds: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(seconds, 0.0), callback, *args)


def check_aware(value: datetime, name: str = "datetime") -> datetime:
    """Return ``value`` in UTC, refusing naive datetimes (their meaning is a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch: how the stores keep instants (exact, sortable).

    A hot path (several per job): an aware ``value`` is subtracted as it is (aware
    arithmetic is in UTC whatever its zone), not first converted with ``check_aware``."""
    zone = value.tzinfo
    if zone is not UTC and (zone is None or value.utcoffset() is None):
        check_aware(value)  # raises
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """The inverse of ``to_micros``."""
    return _EPOCH + timedelta(microseconds=value)


def now_micros() -> int:
    """The wall clock in epoch microseconds, cheaply (hot paths)."""
    return time.time_ns() // 1_000


@lru_cache(maxsize=1024)
def format_rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` and microseconds trimmed to milliseconds when exact.
    Cached: a batch's jobs share their instants (created, updated, first fire)."""
    v = check_aware(value)
    base = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if v.microsecond % 1000 == 0:
        return f"{base}.{v.microsecond // 1000:03d}Z"
    return f"{base}.{v.microsecond:06d}Z"


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp strictly; raise ``ValueError`` otherwise.

    ``YYYY-MM-DD``, then ``T``, ``t`` or a space, ``hh:mm:ss`` (seconds required),
    an optional fraction, then ``Z``/``z`` or ``+hh:mm``/``-hh:mm`` (required),
    in ASCII digits and nothing before or after: no ISO week or ordinal dates,
    no basic format, no trailing NUL or space. A leap second (``:60``) is refused.
    """
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, oh, om = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        offset = timedelta(0)
        if zulu is None:
            if int(oh) > 23 or int(om) > 59:
                raise ValueError(f"offset out of range: {text!r}")
            offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
        value = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros,
            tzinfo=timezone(offset),
        )  # fmt: skip
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp out of range: {text!r}") from None
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r} ({exc})") from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
