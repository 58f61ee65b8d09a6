"""Store contract: the workers' side — leases, compare-and-set outcomes, retries, reaping."""

from __future__ import annotations

import dataclasses

import pytest

from chronoq.domain.retry import attempts_left_after_lost_lease
from chronoq.domain.states import RUN_TERMINAL, JobStatus, RunStatus
from chronoq.ports.store import ReapParams, Store

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
    run = await run_by_id(store, job, fired.run_id)
    assert run.status is RunStatus.RUNNING
    assert run.worker_id == "w1"
    assert run.lease_until == at(30)
    assert run.started_at == at(0.5)
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
    run = await run_by_id(store, job, claimed.run_id)
    assert run.started_at == at(5)  # it starts when it becomes available, not when leased


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
    assert await store.extend_leases("w1", [claimed.run_id], at(60)) == []


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


# -- extend_leases and release_runs -----------------------------------------------------------


async def test_extend_leases_returns_only_the_runs_still_held(store: Store) -> None:
    jobs = [make_job(next_fire_at=at(-i)) for i in range(3)]
    await store.insert_jobs(jobs)
    await claim_due(store, T0)
    mine = await claim_runs(store, "w1", T0, limit=2)
    (theirs,) = await claim_runs(store, "w2", T0)
    job_of = {j.job_id: j for j in jobs}

    asked = [mine[0].run_id, theirs.run_id, make_job().job_id, "nope", mine[1].run_id]
    held = await store.extend_leases("w1", asked, at(90))

    assert held == [mine[0].run_id, mine[1].run_id]
    assert (await run_by_id(store, job_of[mine[0].job_id], mine[0].run_id)).lease_until == at(90)
    assert (await run_by_id(store, job_of[theirs.job_id], theirs.run_id)).lease_until == T0 + LEASE

    assert await store.complete_runs([outcome(mine[0], RunStatus.COMPLETED)]) == [True]
    assert await store.extend_leases("w1", [mine[0].run_id, mine[1].run_id], at(120)) == [
        mine[1].run_id
    ]
    assert await store.extend_leases("w1", [], at(120)) == []


async def test_release_hands_runs_back_queued_with_the_same_attempt(store: Store) -> None:
    job = make_job(cron="@every 60s")
    claimed = await submit_and_lease(store, job, "w1")

    assert await store.release_runs("w2", [claimed.run_id]) == 0
    assert await store.release_runs("w1", [claimed.run_id, make_job().job_id, "nope"]) == 1

    run = await run_by_id(store, job, claimed.run_id)
    assert run.status is RunStatus.QUEUED
    assert run.attempt == 1
    assert (run.lease_until, run.worker_id, run.started_at) == (None, None, None)
    assert (await job_now(store, job)).status is JobStatus.PENDING
    assert await store.release_runs("w1", [claimed.run_id]) == 0

    (again,) = await claim_runs(store, "w2", at(1))
    assert (again.run_id, again.attempt) == (claimed.run_id, 1)
    assert await store.complete_runs([outcome(claimed, RunStatus.COMPLETED)]) == [False]


# -- reap_expired -----------------------------------------------------------------------------


async def test_reap_retries_a_run_whose_lease_expired(store: Store) -> None:
    job = make_job(max_retries=3)
    claimed = await submit_and_lease(store, job, "w1")  # lease until T0 + 30 s

    assert await store.reap_expired(ReapParams(now=at(29), retry_at=at(29))) == 0
    assert await store.reap_expired(ReapParams(now=at(31), retry_at=at(32))) == 1

    old, new = await runs_of(store, job)
    assert old.run_id == claimed.run_id
    assert old.status is RunStatus.RETRY_SCHEDULED
    assert old.completed_at == at(31)
    assert old.error_message is not None and "lease" in old.error_message
    assert old.lease_until is None
    assert (new.attempt, new.status, new.scheduled_for) == (2, RunStatus.QUEUED, T0)
    assert (new.triggered_at, new.available_at) == (at(31), at(32))
    assert (await job_now(store, job)).status is JobStatus.PENDING

    stale = outcome(claimed, RunStatus.COMPLETED, completed_at=at(33))
    assert await store.complete_runs([stale]) == [False]
    assert await store.reap_expired(ReapParams(now=at(31), retry_at=at(32))) == 0


async def test_reap_kills_a_run_with_no_attempts_left(store: Store) -> None:
    job = make_job(max_retries=1)
    await submit_and_lease(store, job, "w1")
    assert await store.reap_expired(ReapParams(now=at(31), retry_at=at(31))) == 1
    (second,) = await claim_runs(store, "w2", at(31))
    assert second.attempt == 2

    assert await store.reap_expired(ReapParams(now=at(100), retry_at=at(100))) == 1

    runs = await runs_of(store, job)
    assert [(r.attempt, r.status) for r in runs] == [
        (1, RunStatus.RETRY_SCHEDULED),
        (2, RunStatus.DEAD),
    ]
    assert (await job_now(store, job)).status is JobStatus.FAILED


async def test_reap_with_no_retries_follows_the_lost_lease_rule(store: Store) -> None:
    job = make_job(max_retries=0)
    await submit_and_lease(store, job, "w1")
    assert await store.reap_expired(ReapParams(now=at(31), retry_at=at(31))) == 1
    runs = await runs_of(store, job)
    if attempts_left_after_lost_lease(1, 0):
        assert [(r.attempt, r.status) for r in runs] == [
            (1, RunStatus.RETRY_SCHEDULED),
            (2, RunStatus.QUEUED),
        ]
    else:
        assert [(r.attempt, r.status) for r in runs] == [(1, RunStatus.DEAD)]


async def test_reap_expire_all_takes_every_running_run_up_to_the_limit(store: Store) -> None:
    jobs = [make_job(cron="@every 1h", max_retries=2, next_fire_at=at(-i)) for i in range(3)]
    await store.insert_jobs(jobs)
    await claim_due(store, T0)
    await claim_runs(store, "w1", T0, lease_until=at(3600))

    assert await store.reap_expired(ReapParams(now=T0, retry_at=T0)) == 0
    assert await store.reap_expired(ReapParams(now=T0, retry_at=T0, expire_all=True, limit=2)) == 2
    assert await store.reap_expired(ReapParams(now=T0, retry_at=T0, expire_all=True)) == 1
    for job in jobs:
        assert [r.status for r in await runs_of(store, job)] == [
            RunStatus.RETRY_SCHEDULED,
            RunStatus.QUEUED,
        ]
        assert (await job_now(store, job)).status is JobStatus.PENDING


# -- one terminal outcome per fire ------------------------------------------------------------


async def test_a_stale_worker_cannot_add_a_second_outcome_to_a_fire(store: Store) -> None:
    job = make_job(max_retries=2)
    first = await submit_and_lease(store, job, "w1")
    assert await store.reap_expired(ReapParams(now=at(31), retry_at=at(31))) == 1
    (second,) = await claim_runs(store, "w2", at(31))
    assert await store.complete_runs([outcome(second, RunStatus.COMPLETED, worker_id="w2")]) == [
        True
    ]

    late = outcome(first, RunStatus.COMPLETED, worker_id="w1")
    assert await store.complete_runs([late]) == [False]
    terminal = [r for r in await runs_of(store, job) if r.status in RUN_TERMINAL]
    assert [r.run_id for r in terminal] == [second.run_id]


async def test_the_schema_refuses_a_second_terminal_run_for_a_fire(harness: Harness) -> None:
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
