"""When a job fires next: the schedule plus the misfire rule (DESIGN §5.8).

The default misfire policy is *coalesce*: however many fires were missed while
nothing could run them, the job runs one catch-up fire (the one being claimed)
and then continues on its schedule after ``now``. Interval schedules stay
anchored on their original cadence, so ``@every 2s`` never drifts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from chronoq.domain.schedules import Schedule, parse_schedule


def first_fire(
    *, cron_schedule: str | None, timezone: str | None, next_fire_at: datetime | None, now: datetime
) -> datetime | None:
    """The first due time of a new job: ``next_fire_at`` if given, else the schedule's, else now."""
    if next_fire_at is not None:
        return next_fire_at
    if cron_schedule is not None:
        return parse_schedule(cron_schedule, timezone).next_after(now)
    return now


def next_fire(
    *, cron_schedule: str | None, timezone: str | None, scheduled_for: datetime, now: datetime
) -> datetime | None:
    """The fire after ``scheduled_for`` (being claimed at ``now``), skipping missed ones."""
    if cron_schedule is None:
        return None
    schedule = parse_schedule(cron_schedule, timezone)
    following = schedule.next_after(scheduled_for)
    if following is None or following > now:
        return following
    return _resume_after(schedule, scheduled_for, now)


def _resume_after(schedule: Schedule, anchor: datetime, now: datetime) -> datetime | None:
    interval = getattr(schedule, "interval", None)
    if isinstance(interval, timedelta) and interval > timedelta(0):
        steps = (now - anchor) // interval + 1
        return anchor + interval * steps
    return schedule.next_after(now)
