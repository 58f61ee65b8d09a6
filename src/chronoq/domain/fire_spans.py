"""Arithmetic over a schedule's fires: the last fire before an instant, the first at or
after one, the n-th, and how many a span covers — cheap for ``@every`` schedules (exact
arithmetic on the anchor) and bounded for cron ones (``SPAN_COUNT_CAP``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from chronoq.domain.policies import TICK, interval_of
from chronoq.domain.schedules import Schedule

SPAN_COUNT_CAP: Final = 1_000
"""A skipped span counts its fires one by one up to this many; past it ``count`` is None
(interval schedules are counted exactly by arithmetic, whatever their length). One step
of a cron schedule costs ~7 us, so a claim never spends more than ~7 ms per job counting."""


def nth_fire(schedule: Schedule | None, first: datetime, n: int) -> datetime:
    at = first
    for _ in range(n - 1):
        nxt = schedule.next_after(at) if schedule is not None else None
        if nxt is None:
            break
        at = nxt
    return at


def next_after_now(schedule: Schedule, anchor: datetime, now: datetime) -> datetime | None:
    """The first fire after ``now``; interval schedules stay on their anchor's cadence."""
    interval = interval_of(schedule)
    if interval is not None:
        return anchor + interval * ((now - anchor) // interval + 1)
    return schedule.next_after(now)


def first_at_or_after(schedule: Schedule, anchor: datetime, at: datetime) -> datetime | None:
    """The first fire ``>= at`` of a schedule whose fire ``anchor`` is ``< at``."""
    interval = interval_of(schedule)
    if interval is not None:
        return anchor + interval * -((anchor - at) // interval)
    return schedule.next_after(at - TICK)


def last_at_or_before(schedule: Schedule, first: datetime, until: datetime) -> datetime:
    """The last fire in ``[first, until]``, given that ``first`` is a fire ``<= until``."""
    interval = interval_of(schedule)
    if interval is not None:
        return first + interval * ((until - first) // interval)
    last = last_before(schedule, first, until + timedelta(microseconds=1))
    return last if last is not None else first


def last_before(schedule: Schedule, first: datetime, before: datetime) -> datetime | None:
    """The last fire ``>= first`` and ``< before`` (None if ``first >= before``)."""
    if first >= before:
        return None
    interval = interval_of(schedule)
    if interval is not None:
        return first + interval * ((before - first - timedelta(microseconds=1)) // interval)
    # Cron has no "previous fire": look in windows ending at ``before``, each 8 times
    # wider than the last, and walk forward only inside the first window with a fire.
    width = timedelta(seconds=1)
    while True:
        start = max(first, before - width)
        at = first if start == first else schedule.next_after(start - timedelta(microseconds=1))
        if at is not None and at < before:
            while True:
                nxt = schedule.next_after(at)
                if nxt is None or nxt >= before:
                    return at
                at = nxt
        if start == first:
            return None
        width *= 8


def span_count(
    schedule: Schedule | None, first: datetime, last: datetime, *, cap: int = SPAN_COUNT_CAP
) -> int | None:
    """Nominal fires in ``[first, last]`` (both fires); None past ``cap`` for cron."""
    if schedule is None or first == last:
        return 1
    interval = interval_of(schedule)
    if interval is not None:
        return (last - first) // interval + 1
    count = 1
    at: datetime | None = first
    while at is not None and at < last:
        at = schedule.next_after(at)
        if at is None or at > last:
            break
        count += 1
        if count > cap:
            return None
    return count
