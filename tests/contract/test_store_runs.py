"""Store contract: the workers' side — leases, compare-and-set outcomes, retries.

Lost runs (``reap_lost``, ``release_runs``) are in ``test_dispatch_lost.py``; starting
and lease renewal in ``test_dispatch_started.py``.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from chronoq.domain.jobs import OUTPUT_HEAD_CHARS, RunOutcome
from chronoq.domain.states import RUN_TERMINAL, JobStatus, RunStatus
from chronoq.errors import ValidationError
from chronoq.ports.dispatch import LeaseRenewal
from chronoq.ports.store import Store

from .conftest import Harness
from .helpers import (
    LEASE,
    T0,
    at,
    claim_due,
    claim_runs,
    job_now,
    make_job,
    outcome,
    output_of,
    reap,
    run_by_id,
    runs_of,
    submit_and_lease,
)

# -- claim_runs -------------------------------------------------------------------------------


async def test_claim_runs_leases_the_run_and_marks_the_job_running(store: Store) -> None:
    job = make_job(max_retries=2, timeout_seconds=5.0, payload="sleep:1s")
    await store.insert_jobs([job])
    (fired,) = await claim_due(store, T0)

    (claimed,) = await claim_runs(store, "w1", at(0.5), lease_until=at(30))

    assert claimed.run_id == fired.run_id
    assert claimed.job_id == job.job_id
    assert claimed.attempt == 1
    assert claimed.scheduled_for == T0
    assert claimed.available_at == T0
    assert claimed.payload == "sleep:1s"
    assert claimed.payload_ref is None
    assert claimed.timeout_seconds == 5.0
    assert claimed.max_retries == 2
    assert claimed.recurring is False
    assert claimed.interruptions == 0
    run = await run_by_id(store, job, fired.run_id)
    assert run.status is RunStatus.RUNNING
    assert run.worker_id == "w1"
    assert run.lease_until == at(30)
    assert run.started_at is None  # leased, not started: only mark_started says it began
    assert run.interruptions == 0
    assert (await job_now(store, job)).status is JobStatus.RUNNING
    assert await claim_runs(store, "w2", at(1)) == []
    assert await store.next_available_at() is None


async def test_claim_runs_respects_available_at_and_the_horizon(store: Store) -> None:
    job = make_job(cron="@every 60s", next_fire_at=at(5))
    await store.insert_jobs([job])
    await claim_due(store, T0, horizon=at(5))
    assert await store.next_available_at() == at(5)

    assert await claim_runs(store, "w1", T0, horizon=at(4.999)) == []
    (claimed,) = await claim_runs(store, "w1", T0, horizon=at(5))

    assert claimed.recurring is True
    assert claimed.available_at == at(5)  # the worker waits for it; the store records no start
    assert (await run_by_id(store, job, claimed.run_id)).started_at is None


async def test_claim_runs_takes_the_earliest_available_up_to_the_limit(store: Store) -> None:
    jobs = [make_job(next_fire_at=at(-s)) for s in (3, 1, 2)]
    await store.insert_jobs(jobs)
    await claim_due(store, T0)

    first = await claim_runs(store, "w1", T0, limit=2)
    rest = await claim_runs(store, "w2", T0, limit=2)

    assert [c.scheduled_for for c in first] == [at(-3), at(-2)]
    assert [c.scheduled_for for c in rest] == [at(-1)]


# -- complete_runs ----------------------------------------------------------------------------


async def test_complete_is_compare_and_set_on_worker_and_attempt(store: Store) -> None:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1")
    before = await run_by_id(store, job, claimed.run_id)

    wrong_worker = outcome(claimed, RunStatus.COMPLETED, worker_id="w2")
    wrong_attempt = outcome(claimed, RunStatus.COMPLETED, attempt=2)
    unknown = dataclasses.replace(wrong_worker, worker_id="w1", run_id=make_job().job_id)
    garbage = dataclasses.replace(unknown, run_id="not-a-run")
    assert await store.complete_runs([wrong_worker, wrong_attempt, unknown, garbage]) == [
        False,
        False,
        False,
        False,
    ]
    assert await run_by_id(store, job, claimed.run_id) == before
    assert (await job_now(store, job)).status is JobStatus.RUNNING

    right = outcome(claimed, RunStatus.COMPLETED)
    assert await store.complete_runs([wrong_worker, right, right]) == [False, True, False]
    assert await store.complete_runs([right]) == [False]
    assert await store.complete_runs([]) == []


async def test_a_completed_one_shot_run_records_everything_and_completes_the_job(
    store: Store,
) -> None:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1")
    done = outcome(
        claimed,
        RunStatus.COMPLETED,
        started_at=at(1),
        completed_at=at(2),
        output="Success: hi",
        exit_code=0,
    )
    assert await store.complete_runs([done]) == [True]

    run = await run_by_id(store, job, claimed.run_id)
    assert run.status is RunStatus.COMPLETED
    assert (run.started_at, run.completed_at) == (at(1), at(2))
    assert (run.output, run.exit_code, run.error_message) == ("Success: hi", 0, None)
    assert run.worker_id == "w1"
    assert run.lease_until is None
    after = await job_now(store, job)
    assert after.status is JobStatus.COMPLETED
    assert after.updated_at == at(2)
    assert await store.extend_leases("w1", [claimed.run_id], at(60)) == LeaseRenewal(
        held=[], cancel=[]
    )


async def test_an_outcome_needs_no_mark_started_and_records_its_started_at(
    store: Store,
) -> None:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1")  # never marked started
    done = outcome(claimed, RunStatus.FAILED, started_at=at(3), completed_at=at(4), exit_code=2)
    assert await store.complete_runs([done]) == [True]
    run = await run_by_id(store, job, claimed.run_id)
    assert (run.status, run.started_at, run.completed_at) == (RunStatus.FAILED, at(3), at(4))
    assert await store.mark_started("w1", [claimed.run_id], at(5)) == []


async def test_retry_scheduled_creates_the_next_attempt_then_final_failure_fails_the_job(
    store: Store,
) -> None:
    job = make_job(max_retries=1)
    first = await submit_and_lease(store, job, "w1")
    failed = outcome(
        first,
        RunStatus.RETRY_SCHEDULED,
        completed_at=at(2),
        retry_at=at(10),
        exit_code=1,
        error_message="boom",
    )
    assert await store.complete_runs([failed]) == [True]

    old, new = await runs_of(store, job)
    assert (old.attempt, old.status, old.error_message) == (1, RunStatus.RETRY_SCHEDULED, "boom")
    assert new.attempt == 2
    assert new.status is RunStatus.QUEUED
    assert new.scheduled_for == T0
    assert new.available_at == at(10)
    assert new.triggered_at == at(2)
    assert new.run_id != old.run_id
    assert (await job_now(store, job)).status is JobStatus.PENDING
    assert await store.next_available_at() == at(10)
    assert await claim_runs(store, "w2", at(5)) == []

    (second,) = await claim_runs(store, "w2", at(10))
    assert (second.run_id, second.attempt) == (new.run_id, 2)
    final = outcome(second, RunStatus.FAILED, worker_id="w2", started_at=at(10), exit_code=1)
    assert await store.complete_runs([final]) == [True]

    assert (await job_now(store, job)).status is JobStatus.FAILED
    newest_first = await store.list_runs(job.user_id, job.job_id)
    assert [(r.attempt, r.status) for r in newest_first] == [
        (2, RunStatus.FAILED),
        (1, RunStatus.RETRY_SCHEDULED),
    ]


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TIMED_OUT])
async def test_a_recurring_job_returns_to_pending_after_a_run(
    store: Store, status: RunStatus
) -> None:
    job = make_job(cron="@every 10s")
    claimed = await submit_and_lease(store, job, "w1")
    assert (await job_now(store, job)).status is JobStatus.RUNNING
    assert await store.complete_runs([outcome(claimed, status)]) == [True]
    after = await job_now(store, job)
    assert after.status is JobStatus.PENDING
    assert after.next_fire_at == at(10)


async def test_outcomes_of_several_runs_are_recorded_in_one_call(store: Store) -> None:
    jobs = [make_job(next_fire_at=at(-i)) for i in range(3)]
    await store.insert_jobs(jobs)
    await claim_due(store, T0)
    claimed = await claim_runs(store, "w1", T0)
    statuses = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TIMED_OUT]
    outs = [outcome(c, s) for c, s in zip(claimed, statuses, strict=True)]
    assert await store.complete_runs(outs) == [True, True, True]
    by_job = {c.job_id: s for c, s in zip(claimed, statuses, strict=True)}
    for job in jobs:
        (run,) = await runs_of(store, job)
        assert run.status is by_job[job.job_id]
        expected = JobStatus.COMPLETED if run.status is RunStatus.COMPLETED else JobStatus.FAILED
        assert (await job_now(store, job)).status is expected


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SKIPPED])
async def test_a_batch_with_a_status_no_worker_reports_is_refused_whole(
    store: Store, status: RunStatus
) -> None:
    jobs = [make_job(next_fire_at=at(-i)) for i in range(2)]
    await store.insert_jobs(jobs)
    await claim_due(store, T0)
    good, bad = await claim_runs(store, "w1", T0)
    with pytest.raises(ValidationError, match=f"cannot end {status.value}"):
        await store.complete_runs([outcome(good, RunStatus.COMPLETED), outcome(bad, status)])
    by_id = {job.job_id: job for job in jobs}
    for claimed in (good, bad):
        run = await run_by_id(store, by_id[claimed.job_id], claimed.run_id)
        assert (run.status, run.completed_at) == (RunStatus.RUNNING, None), "nothing written"


# -- extend_leases -----------------------------------------------------------------------


async def test_extend_leases_returns_only_the_runs_still_held(store: Store) -> None:
    jobs = [make_job(next_fire_at=at(-i)) for i in range(3)]
    await store.insert_jobs(jobs)
    await claim_due(store, T0)
    mine = await claim_runs(store, "w1", T0, limit=2)
    (theirs,) = await claim_runs(store, "w2", T0)
    job_of = {j.job_id: j for j in jobs}

    asked = [mine[1].run_id, theirs.run_id, make_job().job_id, "nope", mine[0].run_id]
    renewal = await store.extend_leases("w1", asked, at(90))

    assert renewal == LeaseRenewal(held=[mine[1].run_id, mine[0].run_id], cancel=[])
    assert (await run_by_id(store, job_of[mine[0].job_id], mine[0].run_id)).lease_until == at(90)
    assert (await run_by_id(store, job_of[theirs.job_id], theirs.run_id)).lease_until == T0 + LEASE

    assert await store.complete_runs([outcome(mine[0], RunStatus.COMPLETED)]) == [True]
    renewal = await store.extend_leases("w1", [mine[0].run_id, mine[1].run_id], at(120))
    assert renewal.held == [mine[1].run_id]
    assert await store.extend_leases("w1", [], at(120)) == LeaseRenewal(held=[], cancel=[])


# -- one terminal outcome per fire ------------------------------------------------------------


async def test_a_stale_worker_cannot_add_a_second_outcome_to_a_fire(store: Store) -> None:
    job = make_job(max_retries=2)
    first = await submit_and_lease(store, job, "w1", started=True)
    assert await reap(store, at(31)) == 1  # lease expired mid-run: INTERRUPTED, attempt 2
    (second,) = await claim_runs(store, "w2", at(31))
    assert await store.complete_runs([outcome(second, RunStatus.COMPLETED, worker_id="w2")]) == [
        True
    ]

    late = outcome(first, RunStatus.COMPLETED, worker_id="w1")
    assert await store.complete_runs([late]) == [False]
    terminal = [r for r in await runs_of(store, job) if r.status in RUN_TERMINAL]
    assert [r.run_id for r in terminal] == [second.run_id]


async def test_the_schema_refuses_a_second_terminal_run_for_a_fire(harness: Harness) -> None:
    harness.require_schema()
    store = harness.store
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1")
    assert await store.complete_runs([outcome(claimed, RunStatus.FAILED)]) == [True]

    with pytest.raises(harness.integrity_errors):
        await harness.insert_raw_run(
            job_id=job.job_id, user_id=job.user_id, scheduled_for=T0, attempt=2, status="COMPLETED"
        )
    with pytest.raises(harness.integrity_errors):
        await harness.insert_raw_run(
            job_id=job.job_id, user_id=job.user_id, scheduled_for=T0, attempt=1, status="QUEUED"
        )
    await harness.insert_raw_run(  # another attempt that is not terminal is allowed
        job_id=job.job_id, user_id=job.user_id, scheduled_for=T0, attempt=2, status="QUEUED"
    )


@pytest.mark.parametrize("status", sorted(s.value for s in RUN_TERMINAL))
async def test_every_terminal_status_counts_as_the_fires_one_outcome(
    harness: Harness, status: str
) -> None:
    """The unique index's predicate names every terminal status (SQLite spells it as ORs)."""
    harness.require_schema()
    job = make_job()
    claimed = await submit_and_lease(harness.store, job, "w1")
    assert await harness.store.complete_runs([outcome(claimed, RunStatus.COMPLETED)]) == [True]
    with pytest.raises(harness.integrity_errors):
        await harness.insert_raw_run(
            job_id=job.job_id, user_id=job.user_id, scheduled_for=T0, attempt=2, status=status
        )


@pytest.mark.parametrize("status", ["INTERRUPTED", "RETRY_SCHEDULED"])
async def test_the_schema_allows_many_attempts_that_end_only_an_attempt(
    harness: Harness, status: str
) -> None:
    harness.require_schema()
    job = make_job()
    claimed = await submit_and_lease(harness.store, job, "w1")
    assert await harness.store.complete_runs([outcome(claimed, RunStatus.COMPLETED)]) == [True]
    for attempt in (2, 3):  # neither is a terminal outcome of the fire
        await harness.insert_raw_run(
            job_id=job.job_id, user_id=job.user_id, scheduled_for=T0, attempt=attempt, status=status
        )
    assert len(await runs_of(harness.store, job)) == 3


async def test_a_big_mixed_batch_of_outcomes_is_recorded_as_each_would_be_alone(
    store: Store,
) -> None:
    """More runs than one SQLite statement ends (500), in one batch: retries, outputs
    longer than a run's inline head, and runs reported twice (a stale report first, and
    the right one reported again after it) — each outcome as it would be on its own."""
    jobs = [make_job(max_retries=1) for _ in range(1100)]
    await store.insert_jobs(jobs)
    assert len(await claim_due(store, T0, limit=2000)) == len(jobs)
    claimed = await claim_runs(store, "w1", T0, limit=2000)
    assert len(claimed) == len(jobs)
    long_output = "x" * (OUTPUT_HEAD_CHARS + 10) + "end"
    batch: list[RunOutcome] = []
    expected: list[bool] = []
    for number, run in enumerate(claimed):
        if number % 13 == 0:  # a stale report of this run first
            batch.append(outcome(run, RunStatus.COMPLETED, worker_id="w2"))
            expected.append(False)
        if number % 7 == 0:
            retry_at = T0 + timedelta(seconds=5)
            batch.append(outcome(run, RunStatus.RETRY_SCHEDULED, retry_at=retry_at))
        else:
            output = long_output if number % 11 == 0 else f"out {number}"
            batch.append(outcome(run, RunStatus.COMPLETED, output=output))
        expected.append(True)
        if number % 13 == 0:  # and reported again after it was recorded: stale
            batch.append(outcome(run, RunStatus.FAILED))
            expected.append(False)
    assert await store.complete_runs(batch) == expected
    by_job = {job.job_id: job for job in jobs}
    for number, run in enumerate(claimed[:60]):
        job = by_job[run.job_id]
        runs = await runs_of(store, job)
        if number % 7 == 0:
            assert [(r.attempt, r.status) for r in runs] == [
                (1, RunStatus.RETRY_SCHEDULED),
                (2, RunStatus.QUEUED),
            ]
            assert (await job_now(store, job)).status is JobStatus.PENDING
            continue
        assert [(r.attempt, r.status) for r in runs] == [(1, RunStatus.COMPLETED)]
        assert (await job_now(store, job)).status is JobStatus.COMPLETED
        whole = await output_of(store, job, run.run_id)
        assert whole == (long_output if number % 11 == 0 else f"out {number}")
