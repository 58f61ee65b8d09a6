"""The explicit per-job DST policy (``dst_gap``, ``dst_repeat``): every combination, on DST
days in five zones of both hemispheres (New York, Berlin, Lord Howe's half-hour shift,
Santiago, Chatham), against a brute-force walk over UTC minutes that knows nothing of
folds or transitions; and the golden cases a user reads in docs/policies.md."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronoq.domain.claims import DueJob, plan_claim
from chronoq.domain.policies import Policies, first_fire_at
from chronoq.domain.schedules import CronSchedule, DstGap, DstRepeat, parse_schedule
from chronoq.errors import ScheduleError
from tests.unit.test_schedules import Expr, around_transition, cron_expression, fires_until

NY, BERLIN, SYDNEY = "America/New_York", "Europe/Berlin", "Australia/Sydney"


def brute_force(
    matches: Callable[[datetime], bool], zone_name: str, *, shift: bool, once: bool,
    start: datetime, end: datetime,
) -> list[datetime]:  # fmt: skip
    """Fires in ``(start, end)`` by walking UTC minutes: a matching wall time that occurs
    fires at its occurrences (only the first with ``once``); one that does not occur (a
    gap) fires at the first instant past it with ``shift``, else not at all."""
    zone = ZoneInfo(zone_name)
    minutes: list[tuple[datetime, datetime]] = []
    t = start.replace(second=0, microsecond=0) - timedelta(hours=3)
    while t < end + timedelta(hours=3):
        minutes.append((t, t.astimezone(zone).replace(tzinfo=None)))
        t += timedelta(minutes=1)
    hits: set[datetime] = set()
    seen: set[datetime] = set()
    for u, wall in minutes:
        if matches(wall) and not (once and wall in seen):
            hits.add(u)
        seen.add(wall)
    if shift:
        occurring = {wall for _, wall in minutes}
        wall = min(occurring)
        while wall <= max(occurring):
            if wall not in occurring and matches(wall):
                hits.add(next(u for u, w in minutes if w >= wall))
            wall += timedelta(minutes=1)
    return sorted(h for h in hits if start < h < end)


POLICIES = [(g, r) for g in (DstGap.SHIFT, DstGap.SKIP) for r in (DstRepeat.FIRST, DstRepeat.BOTH)]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron_expression(seconds=False), around_transition(), st.sampled_from(POLICIES))
def test_every_dst_policy_matches_brute_force(
    expr: Expr, where: tuple[str, datetime], policy: tuple[DstGap, DstRepeat]
) -> None:
    text, matches, _ = expr
    zone, start = where
    gap, repeat = policy
    try:
        schedule = parse_schedule(text, zone, dst_gap=gap, dst_repeat=repeat)
    except ScheduleError:
        return  # e.g. day 31 in 30-day months only
    end = start + timedelta(hours=4)
    expected = brute_force(
        matches, zone, shift=gap is DstGap.SHIFT, once=repeat is DstRepeat.FIRST,
        start=start, end=end,
    )  # fmt: skip
    assert fires_until(schedule, start, end) == expected


def test_auto_is_the_design_rule() -> None:
    fixed = parse_schedule("30 2 * * *", NY)
    interval = parse_schedule("0 * * * *", NY)
    assert isinstance(fixed, CronSchedule) and isinstance(interval, CronSchedule)
    assert (fixed.gap_shift, fixed.repeat_once) == (True, True)
    assert (interval.gap_shift, interval.repeat_once) == (False, False)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# Spring forward and fall back, 2026: New York (Mar 8 / Nov 1, 02:00 local), Berlin
# (Mar 29 02:00 / Oct 25 03:00), Sydney (Oct 4 02:00 spring / Apr 5 03:00 fall).
GAP_CASES = [
    (NY, "30 2 * * *", utc(2026, 3, 7, 12), utc(2026, 3, 8, 7, 0)),
    (BERLIN, "30 2 * * *", utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 0)),
    (SYDNEY, "30 2 * * *", utc(2026, 10, 3, 0), utc(2026, 10, 3, 16, 0)),
]


@pytest.mark.parametrize(("zone", "cron", "after", "transition"), GAP_CASES)
def test_a_skipped_wall_time_shifts_or_is_skipped(
    zone: str, cron: str, after: datetime, transition: datetime
) -> None:
    shifted = parse_schedule(cron, zone, dst_gap=DstGap.SHIFT).next_after(after)
    skipped = parse_schedule(cron, zone, dst_gap=DstGap.SKIP).next_after(after)
    assert shifted == transition
    assert skipped == transition + timedelta(days=1, minutes=30) - timedelta(hours=1)


REPEAT_CASES = [
    (NY, "30 1 * * *", utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)),
    (BERLIN, "30 2 * * *", utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)),
    (SYDNEY, "30 2 * * *", utc(2026, 4, 4, 15, 30), utc(2026, 4, 4, 16, 30)),
]


@pytest.mark.parametrize(("zone", "cron", "first", "second"), REPEAT_CASES)
def test_a_repeated_wall_time_fires_once_or_twice(
    zone: str, cron: str, first: datetime, second: datetime
) -> None:
    before = first - timedelta(hours=2)
    once = parse_schedule(cron, zone, dst_repeat=DstRepeat.FIRST)
    both = parse_schedule(cron, zone, dst_repeat=DstRepeat.BOTH)
    assert fires_until(once, before, second + timedelta(hours=1)) == [first]
    assert fires_until(both, before, second + timedelta(hours=1)) == [first, second]


def test_the_job_policy_reaches_the_picker() -> None:
    """``plan_claim`` and ``first_fire_at`` read the schedule with the job's DST policy."""
    policies = Policies(dst_gap=DstGap.SKIP)
    after = utc(2026, 3, 7, 12)
    first = first_fire_at(
        cron_schedule="30 2 * * *", timezone=NY, next_fire_at=None, policies=policies, now=after
    )
    assert first == utc(2026, 3, 9, 6, 30)  # Mar 8 has no 02:30 in New York: skipped
    before = utc(2026, 3, 7, 7, 30)
    due = DueJob(job_id="j", cron_schedule="30 2 * * *", timezone=NY, due=before,
                 policies=policies)  # fmt: skip
    assert plan_claim(due, before).next_fire_at == utc(2026, 3, 9, 6, 30)
