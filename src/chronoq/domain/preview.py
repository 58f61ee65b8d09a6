"""Schedule preview: the next fires of a schedule, in words, with DST transitions marked.

``preview(expression, timezone, after, count)`` answers "when will this run?" before a
job exists (``GET /v1/schedules/preview``, ``chronoq preview``). It uses the same
``Schedule.next_after`` as the pickers, so what it shows is what will happen. Each fire
carries its UTC instant, its wall time in the schedule's zone, the UTC offset, and a
``dst`` mark when daylight saving time touches it (DESIGN §5.9):

* ``gap``: the wall time the fields ask for does not exist that day (spring forward);
  a fixed-time schedule fires once, at the transition;
* ``repeated``: the wall time occurs twice that day (fall back); a fixed-time schedule
  fires once, at the first occurrence, an interval-like one in both passes;
* ``offset_change``: the UTC offset differs from the previous fire's (a transition
  happened in between), so the fire is at another UTC hour than the one before.

An invalid expression, or one that can never fire (``0 0 30 2 *``), raises the same
``ScheduleError`` a submission gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from chronoq.domain.schedules import (
    CronSchedule,
    DstGap,
    DstRepeat,
    EverySchedule,
    parse_schedule,
)
from chronoq.errors import ValidationError

MAX_PREVIEW: Final = 100
GAP: Final = "gap"
REPEATED: Final = "repeated"
OFFSET_CHANGE: Final = "offset_change"


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviewFire:
    at: datetime
    """The fire instant, UTC."""
    local: datetime
    """The same instant on the schedule zone's wall clock (aware)."""
    dst: str | None
    """``gap``, ``repeated``, ``offset_change`` or None (see the module docstring)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Preview:
    expression: str
    timezone: str
    description: str
    fires: list[PreviewFire]


def preview(
    expression: str,
    timezone: str | None,
    after: datetime,
    count: int,
    *,
    dst_gap: DstGap = DstGap.AUTO,
    dst_repeat: DstRepeat = DstRepeat.AUTO,
) -> Preview:
    """The first ``count`` fires strictly after ``after`` (fewer if the schedule ends), with
    the job's DST policy (``dst_gap``, ``dst_repeat``; ``auto`` by default)."""
    if not 1 <= count <= MAX_PREVIEW:
        raise ValidationError(f"count must be from 1 to {MAX_PREVIEW}", field="count")
    schedule = parse_schedule(expression, timezone, dst_gap=dst_gap, dst_repeat=dst_repeat)
    zone = ZoneInfo(timezone or "UTC")
    fires: list[PreviewFire] = []
    cursor = after.astimezone(UTC)
    previous: timedelta | None = None
    while len(fires) < count:
        nxt = schedule.next_after(cursor)
        if nxt is None:
            break
        local = nxt.astimezone(zone)
        offset = local.utcoffset()
        fires.append(PreviewFire(at=nxt, local=local, dst=_mark(schedule, local, previous)))
        previous, cursor = offset, nxt
    return Preview(
        expression=schedule.expression,
        timezone=timezone or "UTC",
        description=describe(schedule),
        fires=fires,
    )


def describe(schedule: CronSchedule | EverySchedule | object) -> str:
    """The schedule in words (cron: cronsim's explanation of the evaluated fields)."""
    if isinstance(schedule, EverySchedule):
        return f"Every {_duration(schedule.interval)}, counted from the previous fire"
    if isinstance(schedule, CronSchedule):
        words = schedule.explain()
        zone = schedule.timezone or "UTC"
        return f"{words} ({zone})"
    raise TypeError(schedule)


def _mark(schedule: object, local: datetime, previous: timedelta | None) -> str | None:
    wall = local.replace(tzinfo=None)
    zone = local.tzinfo
    assert zone is not None
    if isinstance(schedule, CronSchedule) and not schedule.matches_wall(wall):
        return GAP  # moved to the transition: the asked-for wall time does not exist
    if zone.utcoffset(wall.replace(fold=0)) != zone.utcoffset(wall.replace(fold=1)):
        return REPEATED
    if previous is not None and local.utcoffset() != previous:
        return OFFSET_CHANGE
    return None


def _duration(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
