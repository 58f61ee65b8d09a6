"""When a job fires first and next under the default policies: the coalescing misfire
rule (DESIGN §5.8) as ``domain.policies`` applies it (``first_fire_at``, ``plan_claim``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronoq.domain.claims import MISFIRE_GRACE, DueJob, plan_claim
from chronoq.domain.policies import Policies, first_fire_at
from chronoq.domain.schedules import parse_schedule

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def first_fire(
    *, cron_schedule: str | None, timezone: str | None, next_fire_at: datetime | None, now: datetime
) -> datetime | None:
    return first_fire_at(
        cron_schedule=cron_schedule, timezone=timezone, next_fire_at=next_fire_at,
        policies=Policies(), now=now,
    )  # fmt: skip


def next_fire(
    *, cron_schedule: str | None, timezone: str | None, scheduled_for: datetime, now: datetime
) -> datetime | None:
    """The next fire once the picker claims ``scheduled_for`` at ``now`` (default policies)."""
    due = DueJob(job_id="j", cron_schedule=cron_schedule, timezone=timezone, due=scheduled_for)
    return plan_claim(due, now).next_fire_at


# -- first_fire -------------------------------------------------------------------------------


def test_immediate_job_is_due_now() -> None:
    assert first_fire(cron_schedule=None, timezone=None, next_fire_at=None, now=T0) == T0


def test_next_fire_at_is_the_first_fire() -> None:
    at = T0 + timedelta(hours=5)
    assert first_fire(cron_schedule=None, timezone=None, next_fire_at=at, now=T0) == at


def test_next_fire_at_in_the_past_is_kept() -> None:
    """A past time is due at once (the picker claims it); it is not moved to now."""
    at = T0 - timedelta(days=1)
    assert first_fire(cron_schedule=None, timezone=None, next_fire_at=at, now=T0) == at


def test_next_fire_at_wins_over_the_schedule() -> None:
    at = T0 + timedelta(minutes=7, seconds=3)
    got = first_fire(cron_schedule="0 * * * *", timezone=None, next_fire_at=at, now=T0)
    assert got == at


@pytest.mark.parametrize(
    ("expression", "timezone", "expected"),
    [
        ("*/15 * * * *", None, utc(2026, 3, 1, 12, 15)),
        ("*/2 * * * * *", None, utc(2026, 3, 1, 12, 0, 2)),  # 6 fields: seconds first
        ("@hourly", None, utc(2026, 3, 1, 13, 0)),
        ("@daily", None, utc(2026, 3, 2, 0, 0)),
        ("@every 2s", None, utc(2026, 3, 1, 12, 0, 2)),
        ("@every 1h30m", None, utc(2026, 3, 1, 13, 30)),
        ("0 9 * * *", "Europe/Berlin", utc(2026, 3, 2, 8, 0)),  # 09:00 CET
    ],
)
def test_recurring_job_first_fires_at_the_schedules_next(
    expression: str, timezone: str | None, expected: datetime
) -> None:
    got = first_fire(cron_schedule=expression, timezone=timezone, next_fire_at=None, now=T0)
    assert got == expected
    assert got == parse_schedule(expression, timezone).next_after(T0)


def test_a_schedule_never_fires_at_now_itself() -> None:
    """``next_after`` is strict: a cron job submitted exactly on a tick waits for the next."""
    got = first_fire(cron_schedule="0 * * * *", timezone=None, next_fire_at=None, now=T0)
    assert got == T0 + timedelta(hours=1)


# -- next_fire --------------------------------------------------------------------------------


def test_one_shot_job_has_no_next_fire() -> None:
    assert next_fire(cron_schedule=None, timezone=None, scheduled_for=T0, now=T0) is None
    later = T0 + timedelta(days=3)
    assert next_fire(cron_schedule=None, timezone=None, scheduled_for=T0, now=later) is None


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("@every 2s", T0 + timedelta(seconds=2)),
        ("*/10 * * * * *", T0 + timedelta(seconds=10)),
        ("0 * * * *", T0 + timedelta(hours=1)),
    ],
)
def test_recurring_next_is_after_the_scheduled_time(expression: str, expected: datetime) -> None:
    # Claimed on time, and claimed a little early (the picker's look-ahead).
    for now in (T0, T0 - timedelta(milliseconds=400), T0 + timedelta(milliseconds=30)):
        assert (
            next_fire(cron_schedule=expression, timezone=None, scheduled_for=T0, now=now)
            == expected
        )


def test_every_is_anchored_on_the_scheduled_time_not_on_now() -> None:
    """A late claim does not shift the cadence: no drift."""
    late = T0 + timedelta(milliseconds=1500)
    got = next_fire(cron_schedule="@every 2s", timezone=None, scheduled_for=T0, now=late)
    assert got == T0 + timedelta(seconds=2)


def test_every_after_a_long_outage_coalesces_onto_its_cadence() -> None:
    now = T0 + timedelta(hours=3, seconds=1, milliseconds=250)  # ~5,400 missed fires
    got = next_fire(cron_schedule="@every 2s", timezone=None, scheduled_for=T0, now=now)
    assert got == T0 + timedelta(hours=3, seconds=2)


def test_every_resumes_strictly_after_now_when_now_is_on_the_cadence() -> None:
    now = T0 + timedelta(seconds=10)  # exactly a fire time
    got = next_fire(cron_schedule="@every 2s", timezone=None, scheduled_for=T0, now=now)
    assert got == T0 + timedelta(seconds=12)


@given(
    interval=st.integers(min_value=1, max_value=86_400),
    outage_us=st.integers(min_value=0, max_value=400 * 86_400 * 10**6),
)
def test_every_coalesce_property(interval: int, outage_us: int) -> None:
    """After any outage: the next fire is on the original cadence, strictly after now, and
    at most one interval after it (exactly one catch-up, then back on schedule)."""
    step = timedelta(seconds=interval)
    now = T0 + timedelta(microseconds=outage_us)
    got = next_fire(cron_schedule=f"@every {interval}s", timezone=None, scheduled_for=T0, now=now)
    assert got is not None
    assert (got - T0) % step == timedelta(0)
    assert got > T0
    if now > T0 + MISFIRE_GRACE and now >= T0 + step:
        assert now < got <= now + step
    else:  # on time (within the grace): the next fire follows, a catch-up without coalescing
        assert got == T0 + step


def test_cron_after_a_long_outage_resumes_after_now() -> None:
    now = utc(2026, 3, 4, 7, 41, 17)  # three days of missed quarter-hours
    got = next_fire(cron_schedule="*/15 * * * *", timezone=None, scheduled_for=T0, now=now)
    assert got == utc(2026, 3, 4, 7, 45)


def test_cron_resumes_after_now_even_on_a_tick() -> None:
    now = utc(2026, 3, 4, 7, 45)
    got = next_fire(cron_schedule="*/15 * * * *", timezone=None, scheduled_for=T0, now=now)
    assert got == utc(2026, 3, 4, 8, 0)


def test_cron_with_timezone_resumes_in_that_zone() -> None:
    now = utc(2026, 3, 10, 6, 0)
    got = next_fire(cron_schedule="0 9 * * *", timezone="Europe/Berlin", scheduled_for=T0, now=now)
    assert got == utc(2026, 3, 10, 8, 0)  # 09:00 CET that day


@given(
    expression=st.sampled_from(
        ["*/7 * * * * *", "*/15 * * * *", "0 */3 * * *", "@hourly", "@daily", "30 2 * * 1-5"]
    ),
    outage_s=st.integers(min_value=0, max_value=60 * 86_400),
)
def test_cron_coalesce_property(expression: str, outage_s: int) -> None:
    """Cron: the next fire is the schedule's first fire after max(scheduled_for, now)."""
    now = T0 + timedelta(seconds=outage_s)
    schedule = parse_schedule(expression)
    got = next_fire(cron_schedule=expression, timezone=None, scheduled_for=T0, now=now)
    following = schedule.next_after(T0)
    assert following is not None
    if following > now or now <= T0 + MISFIRE_GRACE:
        assert got == following
    else:
        assert got == schedule.next_after(now)
        assert got is not None
        assert got > now
    assert got is not None
    assert got > T0
