"""The schedule policies as pure rules (domain/policies.py): claims, starts, resumes.

The central property: whatever the policies and however late the picker claims,
every nominal fire of a schedule between its first fire and the last claim is
accounted for exactly once — by a run or inside one skipped span — and the
schedule never fires past ``end_at`` or more than ``max_fires`` times.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronoq.domain.claims import (
    MISFIRE_GRACE,
    RUN_ALL_BATCH,
    ClaimPlan,
    DueJob,
    plan_claim,
    plan_resume,
)
from chronoq.domain.fire_spans import span_count
from chronoq.domain.policies import (
    Misfire,
    Overlap,
    Policies,
    SkipReason,
    first_fire_at,
    jitter_offset,
)
from chronoq.domain.schedules import parse_schedule
from chronoq.domain.starts import StartAction, StartingRun, plan_start

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def due(cron: str | None, at: datetime, fire_count: int = 0, **policies: object) -> DueJob:
    return DueJob(
        job_id="job-1",
        cron_schedule=cron,
        timezone=None,
        due=at,
        policies=Policies(**policies),  # type: ignore[arg-type]
        fire_count=fire_count,
    )


def fires_of(cron: str, first: datetime, last: datetime) -> list[datetime]:
    schedule = parse_schedule(cron, None)
    out = [first]
    while True:
        nxt = schedule.next_after(out[-1])
        if nxt is None or nxt > last:
            return out
        out.append(nxt)


# -- claims on time -----------------------------------------------------------------------


def test_a_fire_claimed_early_runs_at_its_time_and_the_next_one_follows() -> None:
    plan = plan_claim(due("@every 10s", T0), T0 - S)  # the picker's look-ahead
    assert [r.scheduled_for for r in plan.runs] == [T0]
    assert plan.runs[0].available_at == T0
    assert plan.skips == []
    assert plan.next_fire_at == T0 + 10 * S
    assert plan.fire_count == 1


def test_a_fire_within_the_grace_is_on_time_whatever_the_misfire_policy() -> None:
    now = T0 + MISFIRE_GRACE
    plan = plan_claim(due("@every 60s", T0, misfire=Misfire.SKIP), now)
    assert [r.scheduled_for for r in plan.runs] == [T0]


def test_jitter_is_fixed_per_fire_and_inside_the_spread() -> None:
    plan = plan_claim(due("@every 10s", T0, jitter_seconds=5.0), T0 - S)
    offset = plan.runs[0].available_at - T0
    assert timedelta(0) <= offset < 5 * S
    assert offset == jitter_offset("job-1", T0, 5.0)
    assert plan_claim(due("@every 10s", T0, jitter_seconds=5.0), T0).runs == plan.runs
    spread = {jitter_offset("job-1", T0 + i * S, 5.0) for i in range(50)}
    assert len(spread) > 40  # the fires of one job spread out; not one constant offset
    assert jitter_offset("job-1", T0, 0.0) == timedelta(0)


# -- misfires -------------------------------------------------------------------------------


def test_run_once_coalesces_a_backlog_into_the_oldest_fire() -> None:
    now = T0 + timedelta(hours=1, seconds=5)
    plan = plan_claim(due("@every 60s", T0), now)
    assert [r.scheduled_for for r in plan.runs] == [T0]
    [span] = plan.skips
    assert (span.first, span.last, span.count, span.reason) == (
        T0 + 60 * S,
        T0 + timedelta(hours=1),
        60,
        SkipReason.MISFIRE,
    )
    assert plan.next_fire_at == T0 + timedelta(hours=1, minutes=1)  # on its cadence, after now
    assert plan.fire_count == 61


def test_run_all_runs_each_missed_fire_inside_the_window_and_skips_older_ones() -> None:
    now = T0 + timedelta(minutes=10, seconds=30)
    plan = plan_claim(
        due("@every 60s", T0, misfire=Misfire.RUN_ALL, catch_up_window_seconds=300), now
    )
    window_start = now - timedelta(seconds=300)
    assert [s.reason for s in plan.skips] == [SkipReason.MISFIRE]
    assert plan.skips[0].first == T0 and plan.skips[0].last < window_start
    ran = [r.scheduled_for for r in plan.runs]
    assert ran == fires_of("@every 60s", ran[0], now)
    assert ran[0] >= window_start and len(ran) == 5
    assert plan.next_fire_at == T0 + timedelta(minutes=11)


def test_run_all_catches_up_in_batches() -> None:
    now = T0 + timedelta(seconds=RUN_ALL_BATCH * 3)
    plan = plan_claim(
        due("@every 1s", T0, misfire=Misfire.RUN_ALL, catch_up_window_seconds=10_000), now
    )
    assert len(plan.runs) == RUN_ALL_BATCH
    assert plan.next_fire_at == T0 + RUN_ALL_BATCH * S  # the rest stays due for the next claim


def test_skip_drops_the_late_fires_and_runs_one_still_within_the_grace() -> None:
    now = T0 + timedelta(minutes=10, seconds=2)
    plan = plan_claim(due("@every 60s", T0, misfire=Misfire.SKIP), now)
    assert [r.scheduled_for for r in plan.runs] == [T0 + timedelta(minutes=10)]
    [span] = plan.skips
    assert (span.first, span.last, span.count) == (T0, T0 + timedelta(minutes=9), 10)


def test_skip_with_every_fire_late_runs_nothing() -> None:
    now = T0 + timedelta(minutes=10, seconds=30)
    plan = plan_claim(due("@every 60s", T0, misfire=Misfire.SKIP), now)
    assert plan.runs == []
    assert plan.skips[0].count == 11
    assert plan.next_fire_at == T0 + timedelta(minutes=11)


def test_a_late_one_shot_runs_unless_its_policy_skips_it() -> None:
    late = T0 + timedelta(hours=2)
    assert [r.scheduled_for for r in plan_claim(due(None, T0), late).runs] == [T0]
    plan = plan_claim(due(None, T0, misfire=Misfire.SKIP), late)
    assert plan.runs == [] and plan.skips[0].reason is SkipReason.MISFIRE
    assert plan.next_fire_at is None


def test_start_deadline_at_claim_skips_a_fire_that_can_no_longer_start_in_time() -> None:
    now = T0 + timedelta(seconds=4)  # within the misfire grace, past a 2 s deadline
    plan = plan_claim(due("@every 60s", T0, start_deadline_seconds=2), now)
    assert plan.runs == []
    assert [(s.first, s.reason) for s in plan.skips] == [(T0, SkipReason.MISSED_DEADLINE)]
    assert plan.next_fire_at == T0 + 60 * S


# -- start and end ----------------------------------------------------------------------------


def test_first_fire_respects_start_at_and_end_at() -> None:
    start = T0 + timedelta(hours=1, seconds=30)
    policies = Policies(start_at=start, end_at=start + timedelta(minutes=2))
    first = first_fire_at(
        cron_schedule="0 * * * * *", timezone=None, next_fire_at=None, policies=policies, now=T0
    )
    assert first == T0 + timedelta(hours=1, minutes=1)
    late = Policies(end_at=T0 - S)
    assert (
        first_fire_at(
            cron_schedule="0 * * * * *", timezone=None, next_fire_at=None, policies=late, now=T0
        )
        is None
    )


def test_start_at_on_a_fire_includes_that_fire() -> None:
    start = T0 + timedelta(minutes=5)
    first = first_fire_at(
        cron_schedule="0 * * * * *",
        timezone=None,
        next_fire_at=None,
        policies=Policies(start_at=start),
        now=T0,
    )
    assert first == start


def test_max_fires_ends_the_schedule_after_its_last_fire() -> None:
    plan = plan_claim(due("@every 10s", T0, fire_count=2, max_fires=3), T0)
    assert len(plan.runs) == 1 and plan.next_fire_at is None and plan.ended


def test_end_at_ends_the_schedule() -> None:
    plan = plan_claim(due("@every 10s", T0, end_at=T0 + 5 * S), T0)
    assert len(plan.runs) == 1 and plan.next_fire_at is None


def test_a_fire_past_a_moved_end_is_skipped_as_end_reached() -> None:
    plan = plan_claim(due("@every 10s", T0, end_at=T0 - S), T0)
    assert plan.runs == [] and plan.skips[0].reason is SkipReason.END_REACHED
    assert plan.next_fire_at is None


def test_a_backlog_never_runs_past_max_fires() -> None:
    plan = plan_claim(due("@every 10s", T0, fire_count=0, max_fires=4), T0 + timedelta(hours=1))
    assert plan.fire_count == 4
    covered = len(plan.runs) + sum(s.count or 0 for s in plan.skips)
    assert covered == 4 and plan.next_fire_at is None


# -- the ledger property ----------------------------------------------------------------------

SCHEDULES = ["@every 7s", "@every 60s", "*/5 * * * * *", "0 * * * * *", "30 */2 * * * *"]


@settings(max_examples=300, deadline=None)
@given(
    cron=st.sampled_from(SCHEDULES),
    misfire=st.sampled_from(list(Misfire)),
    window=st.one_of(st.none(), st.integers(0, 900)),
    deadline=st.one_of(st.none(), st.integers(0, 30)),
    max_fires=st.one_of(st.none(), st.integers(0, 40)),
    end_after=st.one_of(st.none(), st.integers(0, 3000)),
    gaps=st.lists(st.integers(-2, 900), min_size=1, max_size=12),
)
def test_every_nominal_fire_has_exactly_one_outcome(
    cron: str,
    misfire: Misfire,
    window: int | None,
    deadline: int | None,
    max_fires: int | None,
    end_after: int | None,
    gaps: list[int],
) -> None:
    policies = Policies(
        misfire=misfire,
        catch_up_window_seconds=window,
        start_deadline_seconds=deadline,
        max_fires=max_fires,
        end_at=None if end_after is None else T0 + timedelta(seconds=end_after),
    )
    nxt = first_fire_at(
        cron_schedule=cron, timezone=None, next_fire_at=None, policies=policies, now=T0
    )
    first, count, now = nxt, 0, T0
    covered: list[datetime] = []
    for gap in gaps:  # the picker claims at now (gap seconds after the due fire)
        if nxt is None:
            break
        now = max(now, nxt + timedelta(seconds=gap))
        plan: ClaimPlan = plan_claim(
            DueJob(
                job_id="j",
                cron_schedule=cron,
                timezone=None,
                due=nxt,
                policies=policies,
                fire_count=count,
            ),
            now,
        )
        covered += [r.scheduled_for for r in plan.runs]
        for span in plan.skips:
            expanded = fires_of(cron, span.first, span.last)
            assert span.count is None or span.count == len(expanded)
            covered += expanded
        assert plan.fire_count - count == len(plan.runs) + sum(s.count or 0 for s in plan.skips)
        assert all(r.available_at >= r.scheduled_for for r in plan.runs)
        count, nxt = plan.fire_count, plan.next_fire_at
        assert nxt is None or nxt > max(covered, default=nxt - S)
    if first is None or not covered:
        return
    assert len(covered) == len(set(covered)), "a fire has two outcomes"
    expected = fires_of(cron, first, max(covered))
    assert sorted(covered) == expected, "a fire has no outcome"
    if max_fires is not None:
        assert len(covered) <= max_fires
    if policies.end_at is not None:
        assert all(c <= policies.end_at for c in covered), "a fire past the end"


def test_span_count_counts_cron_fires_exactly_and_intervals_by_arithmetic() -> None:
    every = parse_schedule("@every 1s", None)
    assert span_count(every, T0, T0 + timedelta(days=1)) == 86_401
    cron = parse_schedule("*/5 * * * * *", None)
    assert span_count(cron, T0, T0 + timedelta(minutes=1)) == 13
    assert span_count(cron, T0, T0 + timedelta(days=1)) is None  # past the cap


# -- starts (overlap, deadline) ---------------------------------------------------------------


def starting(
    *, overlap: Overlap = Overlap.SKIP, running: str | None = "run-0",
    buffered: str | None = None, attempt: int = 1, recurring: bool = True,
    deadline: float | None = None,
) -> StartingRun:  # fmt: skip
    return StartingRun(
        run_id="run-1",
        job_id="job-1",
        scheduled_for=T0,
        attempt=attempt,
        manual=False,
        recurring=recurring,
        policies=Policies(overlap=overlap, start_deadline_seconds=deadline),
        running_run_id=running,
        buffered_run_id=buffered,
    )


@pytest.mark.parametrize(
    ("overlap", "action"),
    [
        (Overlap.ALLOW, StartAction.START),
        (Overlap.SKIP, StartAction.SKIP),
        (Overlap.BUFFER_ONE, StartAction.BUFFER),
        (Overlap.CANCEL_PREVIOUS, StartAction.CANCEL_PREVIOUS),
    ],
)
def test_overlap_policies_when_the_previous_run_is_going(
    overlap: Overlap, action: StartAction
) -> None:
    plan = plan_start(starting(overlap=overlap), T0)
    assert plan.action is action
    assert plan.reason == (SkipReason.OVERLAP if action is StartAction.SKIP else None)


@pytest.mark.parametrize("overlap", list(Overlap))
def test_nothing_running_always_starts(overlap: Overlap) -> None:
    assert plan_start(starting(overlap=overlap, running=None), T0).action is StartAction.START


def test_a_second_fire_while_one_is_buffered_is_skipped() -> None:
    for overlap in (Overlap.BUFFER_ONE, Overlap.CANCEL_PREVIOUS):
        plan = plan_start(starting(overlap=overlap, buffered="run-9"), T0)
        assert (plan.action, plan.reason) == (StartAction.SKIP, SkipReason.OVERLAP)


def test_the_buffered_run_itself_is_judged_again_not_skipped() -> None:
    plan = plan_start(starting(overlap=Overlap.BUFFER_ONE, buffered="run-1"), T0)
    assert plan.action is StartAction.BUFFER


def test_one_shot_jobs_have_no_overlap() -> None:
    assert plan_start(starting(recurring=False), T0).action is StartAction.START


def test_start_deadline_applies_to_first_attempts_only() -> None:
    late = T0 + timedelta(seconds=11)
    plan = plan_start(starting(running=None, deadline=10), late)
    assert (plan.action, plan.reason) == (StartAction.SKIP, SkipReason.MISSED_DEADLINE)
    assert plan_start(starting(running=None, deadline=10), T0 + 10 * S).action is StartAction.START
    retry = starting(running=None, deadline=10, attempt=2)
    assert plan_start(retry, late).action is StartAction.START


# -- resume -----------------------------------------------------------------------------------


def resume(cron: str | None, held: datetime | None, now: datetime, catch_up: bool) -> object:
    return plan_resume(
        job_id="job-1",
        cron_schedule=cron,
        timezone=None,
        paused_fire_at=held,
        policies=Policies(),
        fire_count=3,
        now=now,
        catch_up=catch_up,
    )


def test_resume_skips_the_fires_missed_while_paused() -> None:
    now = T0 + timedelta(minutes=5, seconds=30)
    plan = plan_resume(
        job_id="job-1", cron_schedule="@every 60s", timezone=None, paused_fire_at=T0,
        policies=Policies(), fire_count=3, now=now, catch_up=False,
    )  # fmt: skip
    [span] = plan.skips
    assert (span.first, span.last, span.count, span.reason) == (
        T0, T0 + timedelta(minutes=5), 6, SkipReason.PAUSED,
    )  # fmt: skip
    assert plan.next_fire_at == T0 + timedelta(minutes=6)
    assert plan.fire_count == 9


def test_resume_with_catch_up_hands_the_held_fire_back_to_the_picker() -> None:
    now = T0 + timedelta(minutes=5)
    plan = plan_resume(
        job_id="job-1", cron_schedule="@every 60s", timezone=None, paused_fire_at=T0,
        policies=Policies(), fire_count=3, now=now, catch_up=True,
    )  # fmt: skip
    assert plan.next_fire_at == T0 and plan.skips == []


def test_resume_before_the_held_fire_keeps_it() -> None:
    plan = plan_resume(
        job_id="job-1", cron_schedule="@every 60s", timezone=None, paused_fire_at=T0 + S,
        policies=Policies(), fire_count=0, now=T0, catch_up=False,
    )  # fmt: skip
    assert plan.next_fire_at == T0 + S and plan.skips == []


def test_resume_keeps_a_one_shot_fire() -> None:
    plan = plan_resume(
        job_id="job-1", cron_schedule=None, timezone=None, paused_fire_at=T0,
        policies=Policies(), fire_count=0, now=T0 + timedelta(days=1), catch_up=False,
    )  # fmt: skip
    assert plan.next_fire_at == T0 and plan.skips == []


def test_a_span_too_long_to_count_still_ends_at_max_fires() -> None:
    """A cron backlog past SPAN_COUNT_CAP is counted as far as the fires left, so the
    schedule ends exactly at max_fires (it used to count the cap and fire on)."""
    now = T0 + timedelta(hours=2, milliseconds=500)
    for max_fires in (5, 1500):
        plan = plan_claim(due("* * * * * *", T0, max_fires=max_fires), now)
        assert plan.fire_count == max_fires
        assert len(plan.runs) + sum(s.count or 0 for s in plan.skips) == max_fires
        assert plan.next_fire_at is None
        assert plan.skips[-1].last == T0 + (max_fires - 1) * S


def test_a_one_shot_past_its_end_is_skipped_end_reached() -> None:
    plan = plan_claim(due(None, T0, end_at=T0 - S), T0)
    assert plan.runs == [] and [s.reason for s in plan.skips] == [SkipReason.END_REACHED]


# -- changes (PATCH) --------------------------------------------------------------------------


def test_a_claimed_one_shot_cannot_be_retimed() -> None:
    """Its one fire already has a run: a new time would give it a second fire."""
    from chronoq.domain.changes import apply_changes
    from chronoq.domain.jobs import Job, JobChanges
    from chronoq.domain.states import JobStatus
    from chronoq.errors import ConflictError

    job = Job(
        job_id="j", user_id="u", project_id="p", payload="x", payload_ref=None, payload_size=1,
        cron_schedule=None, timezone=None, next_fire_at=None, shard_id=0,
        status=JobStatus.RUNNING, max_retries=0, timeout_seconds=None, created_at=T0,
        updated_at=T0,
    )  # fmt: skip
    retime = JobChanges(fields=frozenset({"next_fire_at"}), next_fire_at=T0 + S)
    with pytest.raises(ConflictError, match="already claimed"):
        apply_changes(job, retime, T0)
    pending = apply_changes(
        replace(job, status=JobStatus.PENDING, next_fire_at=T0 + 9 * S), retime, T0
    )
    assert pending.job.next_fire_at == T0 + S
