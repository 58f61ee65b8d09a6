"""Store contract: the fire ledger (``list_fires``, ``skip_counts``) and the claim policies
end to end — misfire (``run_once``, ``run_all`` within its window, ``skip``), the start
deadline at claim time, ``max_fires`` and ``end_at`` ending a schedule, jitter (issue 9)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from chronoq.domain.fire_spans import SPAN_COUNT_CAP
from chronoq.domain.jobs import Fire
from chronoq.domain.policies import Misfire, Overlap, Policies, SkipReason, jitter_offset
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.ports.store import Store

from .helpers import (
    T0,
    at,
    claim_due,
    claim_runs,
    complete,
    fires_of,
    job_now,
    lease_and_start,
    outcome,
    policy_job,
    reap,
)

EVERY_10 = "@every 10s"


async def test_the_ledger_lists_each_fire_once_runs_and_skips_merged(store: Store) -> None:
    job = policy_job(cron=EVERY_10, next_fire_at=T0, max_retries=1)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    (first,) = await lease_and_start(store, "w1", T0)
    retry = outcome(
        first, RunStatus.RETRY_SCHEDULED, completed_at=at(1), retry_at=at(2), exit_code=1
    )
    assert await store.complete_runs([retry]) == [True]
    (second_attempt,) = await lease_and_start(store, "w1", at(2))
    await complete(store, second_attempt, "w1", at(3))
    await claim_due(store, at(10))
    (overlapping,) = await lease_and_start(store, "w1", at(10))
    await claim_due(store, at(20))  # refused at start: the at(10) run still runs
    (refused,) = await claim_runs(store, "w2", at(20))
    assert await store.mark_started("w2", [refused.run_id], at(20)) == []
    await claim_due(store, at(63))  # run_once: at(30) runs, at(40)..at(60) coalesce

    fires = await fires_of(store, job)

    assert [(f.scheduled_for, f.last_scheduled_for, f.count, f.outcome) for f in fires] == [
        (T0, T0, 1, "COMPLETED"),
        (at(10), at(10), 1, "RUNNING"),
        (at(20), at(20), 1, "SKIPPED"),
        (at(30), at(30), 1, "QUEUED"),
        (at(40), at(60), 3, "SKIPPED"),
    ]
    assert [f.reason for f in fires] == [
        None,
        None,
        SkipReason.OVERLAP,
        None,
        SkipReason.MISFIRE,
    ]
    assert (fires[0].run_id, fires[0].attempts) == (second_attempt.run_id, 2)
    assert (fires[0].recorded_at, fires[1].recorded_at) == (at(3), at(10))
    assert (fires[1].run_id, fires[1].attempts) == (overlapping.run_id, 1)
    assert (fires[2].run_id, fires[2].recorded_at) == (refused.run_id, at(20))
    assert (fires[3].recorded_at, fires[4].run_id, fires[4].recorded_at) == (at(63), None, at(63))
    assert not any(f.manual for f in fires)
    assert await store.skip_counts() == {SkipReason.OVERLAP: 1, SkipReason.MISFIRE: 3}
    assert (await job_now(store, job)).fire_count == 7


async def test_an_outage_coalesces_into_one_run_and_one_span(store: Store) -> None:
    job = policy_job(cron="@every 1s", next_fire_at=T0)
    await store.insert_jobs([job])
    now = T0 + timedelta(hours=1, milliseconds=300)

    (run,) = await claim_due(store, now)

    assert run.scheduled_for == T0
    run_entry, span = await fires_of(store, job)
    assert run_entry.run_id == run.run_id
    assert (span.scheduled_for, span.last_scheduled_for, span.count) == (at(1), at(3600), 3600)
    assert (span.outcome, span.reason, span.attempts) == ("SKIPPED", SkipReason.MISFIRE, 0)
    after = await job_now(store, job)
    assert (after.next_fire_at, after.fire_count) == (at(3601), 3601)
    assert await store.skip_counts() == {SkipReason.MISFIRE: 3600}


async def test_a_cron_span_too_long_to_count_has_no_count(store: Store) -> None:
    job = policy_job(cron="* * * * * *", next_fire_at=T0)  # every second, by cron
    await store.insert_jobs([job])

    await claim_due(store, at(7200.5))

    _, span = await fires_of(store, job)
    assert (span.scheduled_for, span.last_scheduled_for, span.count) == (at(1), at(7200), None)
    assert await store.skip_counts() == {SkipReason.MISFIRE: SPAN_COUNT_CAP}
    assert (await job_now(store, job)).next_fire_at == at(7201)


async def test_list_fires_filters_by_range_overlap_and_limit(store: Store) -> None:
    job = policy_job(cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    await claim_due(store, at(10))
    await claim_due(store, at(63))  # run at(20); span at(30)..at(60)
    await claim_due(store, at(70))

    def starts(fires: list[Fire]) -> list[datetime]:
        return [f.scheduled_for for f in fires]

    assert starts(await fires_of(store, job)) == [T0, at(10), at(20), at(30), at(70)]
    assert starts(await fires_of(store, job, at(10), at(20))) == [at(10), at(20)]
    assert starts(await fires_of(store, job, at(45), at(50))) == [at(30)]  # the span overlaps
    assert starts(await fires_of(store, job, at(60), at(75))) == [at(30), at(70)]
    assert starts(await fires_of(store, job, at(5), at(9))) == []
    assert starts(await fires_of(store, job, at(71), at(999))) == []
    assert starts(await fires_of(store, job, T0, at(999), limit=2)) == [T0, at(10)]


async def test_skip_counts_add_up_per_reason_over_all_jobs(store: Store) -> None:
    a = policy_job(cron=EVERY_10, next_fire_at=T0)
    b = policy_job(Policies(misfire=Misfire.SKIP), cron=EVERY_10, next_fire_at=T0, user_id="bob")
    await store.insert_jobs([a, b])
    assert await store.skip_counts() == {}

    await claim_due(store, at(100))  # a: run T0, skip at(10)..at(100); b: skip T0..at(90), run

    await store.pause_job(b.user_id, b.job_id, at(101))
    await store.resume_job(b.user_id, b.job_id, at(125), catch_up=False)  # at(110), at(120)
    assert await store.skip_counts() == {SkipReason.MISFIRE: 20, SkipReason.PAUSED: 2}


# -- claim_due policies, end to end ------------------------------------------------------------


async def test_run_all_runs_each_missed_fire_within_the_window(store: Store) -> None:
    policies = Policies(misfire=Misfire.RUN_ALL, catch_up_window_seconds=35)
    job = policy_job(policies, cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])

    runs = await claim_due(store, at(100))

    assert [r.scheduled_for for r in runs] == [at(70), at(80), at(90), at(100)]
    assert all(r.available_at == r.scheduled_for and r.attempt == 1 for r in runs)
    span, *entries = await fires_of(store, job)
    assert (span.scheduled_for, span.last_scheduled_for, span.count, span.reason) == (
        T0,
        at(60),
        7,
        SkipReason.MISFIRE,
    )
    assert [e.outcome for e in entries] == ["QUEUED"] * 4
    after = await job_now(store, job)
    assert (after.next_fire_at, after.fire_count) == (at(110), 11)


@pytest.mark.parametrize(("now", "runs_at"), [(103, 100), (106, None)])
async def test_misfire_skip_drops_late_fires(store: Store, now: float, runs_at: int | None) -> None:
    job = policy_job(Policies(misfire=Misfire.SKIP), cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])

    runs = await claim_due(store, at(now))

    assert [r.scheduled_for for r in runs] == ([] if runs_at is None else [at(runs_at)])
    (span, *_) = await fires_of(store, job)
    last = at(90) if runs_at is not None else at(100)
    assert (span.scheduled_for, span.last_scheduled_for, span.reason) == (
        T0,
        last,
        SkipReason.MISFIRE,
    )
    assert (await job_now(store, job)).next_fire_at == at(110)
    assert (await job_now(store, job)).status is JobStatus.PENDING


async def test_a_one_shot_misfire_skip_fails_the_job(store: Store) -> None:
    job = policy_job(Policies(misfire=Misfire.SKIP), next_fire_at=T0)
    await store.insert_jobs([job])

    assert await claim_due(store, at(60)) == []

    after = await job_now(store, job)
    assert (after.status, after.next_fire_at) == (JobStatus.FAILED, None)
    (fire,) = await fires_of(store, job)
    assert (fire.scheduled_for, fire.count, fire.reason) == (T0, 1, SkipReason.MISFIRE)


async def test_a_fire_claimed_past_its_start_deadline_is_skipped(store: Store) -> None:
    job = policy_job(Policies(start_deadline_seconds=30), cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])

    assert await claim_due(store, at(45)) == []  # run_once: T0 would run, but too late

    entries = await fires_of(store, job)
    assert [(e.scheduled_for, e.last_scheduled_for, e.reason) for e in entries] == [
        (T0, T0, SkipReason.MISSED_DEADLINE),
        (at(10), at(40), SkipReason.MISFIRE),
    ]
    after = await job_now(store, job)
    assert (after.status, after.next_fire_at) == (JobStatus.PENDING, at(50))


async def test_max_fires_ends_the_schedule_and_completes_the_job(store: Store) -> None:
    job = policy_job(Policies(max_fires=3), cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])
    for second in (0, 10):
        await claim_due(store, at(second))
        assert (await job_now(store, job)).next_fire_at == at(second + 10)

    (last,) = await claim_due(store, at(20))

    after = await job_now(store, job)
    assert (after.next_fire_at, after.fire_count, after.status) == (None, 3, JobStatus.PENDING)
    assert await claim_due(store, at(1000)) == []
    for claimed in await claim_runs(store, "w1", at(20)):  # T0, at(10), at(20), in turn
        assert await store.mark_started("w1", [claimed.run_id], at(20)) == [claimed.run_id]
        await complete(store, claimed, "w1", at(21))
    assert last.scheduled_for == at(20)
    assert (await job_now(store, job)).status is JobStatus.COMPLETED


async def test_max_fires_reached_by_skips_completes_the_job_at_claim(store: Store) -> None:
    job = policy_job(Policies(max_fires=2, misfire=Misfire.SKIP), cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])

    assert await claim_due(store, at(100)) == []

    after = await job_now(store, job)
    assert (after.status, after.next_fire_at, after.fire_count) == (JobStatus.COMPLETED, None, 2)
    (span,) = await fires_of(store, job)
    assert (span.scheduled_for, span.last_scheduled_for, span.count) == (T0, at(10), 2)


async def test_end_at_ends_the_schedule(store: Store) -> None:
    job = policy_job(Policies(end_at=at(25)), cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])
    for second in (0, 10, 20):
        (run,) = await claim_due(store, at(second))
        (claimed,) = await lease_and_start(store, "w1", at(second))
        await complete(store, claimed, "w1", at(second + 1))
        assert run.scheduled_for == at(second)

    after = await job_now(store, job)
    assert (after.status, after.next_fire_at) == (JobStatus.COMPLETED, None)
    assert [f.outcome for f in await fires_of(store, job)] == ["COMPLETED"] * 3


async def test_a_schedule_that_ended_while_due_completes_at_claim(store: Store) -> None:
    job = policy_job(Policies(end_at=at(-1)), cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])

    assert await claim_due(store, T0) == []

    after = await job_now(store, job)
    assert (after.status, after.next_fire_at) == (JobStatus.COMPLETED, None)
    (entry,) = await fires_of(store, job)
    assert (entry.scheduled_for, entry.reason) == (T0, SkipReason.END_REACHED)


async def test_jitter_delays_each_fire_by_its_fixed_offset(store: Store) -> None:
    policies = Policies(jitter_seconds=7.5, overlap=Overlap.ALLOW)
    job = policy_job(policies, cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])

    runs = [run for second in (0, 10, 20) for run in await claim_due(store, at(second))]

    for run in runs:
        offset = jitter_offset(job.job_id, run.scheduled_for, 7.5)
        assert timedelta(0) <= offset < timedelta(seconds=7.5)
        assert run.available_at == run.scheduled_for + offset
    assert len({r.available_at - r.scheduled_for for r in runs}) > 1  # a spread, not a shift
    assert await claim_runs(store, "w1", runs[0].available_at - timedelta(microseconds=1)) == []


async def test_retention_deletes_old_skips_and_the_totals_stay(store: Store) -> None:
    job = policy_job(cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])
    await claim_due(store, at(33))  # run T0; skip at(10)..at(30), recorded at(33)
    await store.pause_job(job.user_id, job.job_id, at(34))
    await store.resume_job(job.user_id, job.job_id, at(75), catch_up=False)  # at(40)..at(70)

    await store.purge_finished(at(50))

    entries = await fires_of(store, job)
    assert [(e.scheduled_for, e.reason) for e in entries] == [
        (T0, None),
        (at(40), SkipReason.PAUSED),
    ]
    assert await store.skip_counts() == {SkipReason.MISFIRE: 3, SkipReason.PAUSED: 4}


async def test_the_retries_of_a_manual_fire_are_manual(store: Store) -> None:
    job = policy_job(cron="@every 60s", next_fire_at=at(60), max_retries=1)
    await store.insert_jobs([job])
    manual = await store.trigger_job(job.user_id, job.job_id, at(1))
    assert manual is not None
    (first,) = await lease_and_start(store, "w1", at(1))
    failed = outcome(first, RunStatus.RETRY_SCHEDULED, started_at=at(1), retry_at=at(5))
    assert await store.complete_runs([failed]) == [True]
    (second,) = await lease_and_start(store, "w1", at(5))
    assert await reap(store, at(6), live_workers=frozenset()) == 1  # attempt 3: interrupted

    runs = await store.list_runs(job.user_id, job.job_id)

    assert sorted((r.attempt, r.manual) for r in runs) == [(1, True), (2, True), (3, True)]
    (entry,) = await fires_of(store, job)
    assert (entry.scheduled_for, entry.manual, entry.attempts) == (manual.scheduled_for, True, 3)
    assert second.attempt == 2
