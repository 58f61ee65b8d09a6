"""Dispatch contract: ``mark_started`` (a run may execute only once the store says it
started) and the cancels that ``extend_leases`` reports to the worker."""

from __future__ import annotations

from chronoq.domain.states import JobStatus, RunStatus
from chronoq.ports.dispatch import LeaseRenewal
from chronoq.ports.store import Store

from .helpers import (
    T0,
    at,
    claim_due,
    claim_runs,
    job_now,
    make_job,
    outcome,
    reap,
    release,
    run_by_id,
    runs_of,
    submit_and_lease,
)

# -- mark_started -----------------------------------------------------------------------------


async def test_mark_started_records_the_start_and_answers_in_the_asked_order(
    store: Store,
) -> None:
    jobs = [make_job(next_fire_at=at(-i)) for i in range(3)]
    await store.insert_jobs(jobs)
    await claim_due(store, T0)
    claimed = await claim_runs(store, "w1", T0)
    ids = [c.run_id for c in reversed(claimed)]

    assert await store.mark_started("w1", ids, at(1)) == ids

    for job in jobs:
        (run,) = await runs_of(store, job)
        assert (run.status, run.started_at, run.worker_id) == (RunStatus.RUNNING, at(1), "w1")
    assert await store.mark_started("w1", [], at(1)) == []


async def test_mark_started_applies_only_to_the_workers_own_running_runs(store: Store) -> None:
    job, other = make_job(next_fire_at=at(-1)), make_job()
    await store.insert_jobs([job, other])
    await claim_due(store, T0)
    (mine,) = await claim_runs(store, "w1", T0, limit=1)
    assert mine.job_id == job.job_id
    (queued,) = await runs_of(store, other)  # fired, not leased by anyone

    asked = [mine.run_id, queued.run_id, make_job().job_id, "nope"]
    assert await store.mark_started("w2", asked, at(1)) == []
    assert await store.mark_started("w1", asked, at(1)) == [mine.run_id]

    assert (await run_by_id(store, other, queued.run_id)).started_at is None
    assert (await run_by_id(store, other, queued.run_id)).status is RunStatus.QUEUED


async def test_mark_started_applies_once(store: Store) -> None:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1")
    assert await store.mark_started("w1", [claimed.run_id], at(1)) == [claimed.run_id]

    assert await store.mark_started("w1", [claimed.run_id], at(2)) == []

    assert (await run_by_id(store, job, claimed.run_id)).started_at == at(1)


async def test_mark_started_refuses_a_run_reaped_before_it_started(store: Store) -> None:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1")  # lease until T0 + 30 s
    assert await reap(store, at(31)) == 1  # not started: back to the queue

    assert await store.mark_started("w1", [claimed.run_id], at(32)) == []

    run = await run_by_id(store, job, claimed.run_id)
    assert (run.status, run.started_at, run.worker_id) == (RunStatus.QUEUED, None, None)
    (again,) = await claim_runs(store, "w2", at(33))
    assert again.run_id == claimed.run_id
    assert await store.mark_started("w1", [claimed.run_id], at(34)) == []  # w2's now
    assert await store.mark_started("w2", [claimed.run_id], at(34)) == [claimed.run_id]


async def test_mark_started_refuses_runs_that_ended_or_were_released(store: Store) -> None:
    done, handed_back = make_job(next_fire_at=at(-1)), make_job()
    await store.insert_jobs([done, handed_back])
    await claim_due(store, T0)
    first, second = await claim_runs(store, "w1", T0)
    assert await store.complete_runs([outcome(first, RunStatus.COMPLETED)]) == [True]
    assert await release(store, "w1", [second.run_id], at(1)) == 1

    assert await store.mark_started("w1", [first.run_id, second.run_id], at(2)) == []


# -- cancel, reported at lease renewal --------------------------------------------------------


async def test_extend_leases_reports_the_runs_whose_job_was_cancelled(store: Store) -> None:
    doomed, kept = make_job(next_fire_at=at(-1)), make_job()
    await store.insert_jobs([doomed, kept])
    await claim_due(store, T0)
    first, second = await claim_runs(store, "w1", T0)
    assert first.job_id == doomed.job_id
    ids = [second.run_id, first.run_id]
    assert await store.mark_started("w1", ids, T0) == ids

    result = await store.cancel_job(doomed.user_id, doomed.job_id, at(1))
    assert result is not None
    assert result.running_run_ids == [first.run_id]

    renewal = await store.extend_leases("w1", ids, at(60))
    assert renewal == LeaseRenewal(held=ids, cancel=[first.run_id])
    run = await run_by_id(store, doomed, first.run_id)
    assert (run.status, run.lease_until) == (RunStatus.RUNNING, at(60))  # still the worker's
    assert await store.extend_leases("w2", ids, at(90)) == LeaseRenewal(held=[], cancel=[])


async def test_a_cancel_is_reported_until_the_run_ends_and_not_after(store: Store) -> None:
    job = make_job(max_retries=3)
    claimed = await submit_and_lease(store, job, "w1", started=True)
    await store.cancel_job(job.user_id, job.job_id, at(1))
    for second in (2, 3):  # every renewal reports it: a lost hint does not lose the cancel
        assert (await store.extend_leases("w1", [claimed.run_id], at(second + 30))).cancel == [
            claimed.run_id
        ]

    killed = outcome(claimed, RunStatus.CANCELLED, completed_at=at(4), exit_code=None)
    assert await store.complete_runs([killed]) == [True]

    assert await store.extend_leases("w1", [claimed.run_id], at(60)) == LeaseRenewal(
        held=[], cancel=[]
    )
    (only,) = await runs_of(store, job)
    assert only.status is RunStatus.CANCELLED
    assert (await job_now(store, job)).status is JobStatus.CANCELLED


async def test_a_run_that_finishes_before_the_kill_stays_completed(store: Store) -> None:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1", started=True)
    await store.cancel_job(job.user_id, job.job_id, at(1))

    assert await store.complete_runs([outcome(claimed, RunStatus.COMPLETED)]) == [True]

    (only,) = await runs_of(store, job)
    assert only.status is RunStatus.COMPLETED
    assert (await job_now(store, job)).status is JobStatus.CANCELLED  # never leaves CANCELLED
