"""Store contract: a job inserted with its first fire claimed (``insert_jobs(runs=...)``,
``domain.fire_now``) — the job comes as accepted and is stored fired (not due, one fire
counted), the run is QUEUED with it in one transaction, and no picker ever fires that
job again."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chronoq.domain.fire_now import fire_at_insert
from chronoq.domain.jobs import Job, Run
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.errors import ConflictError
from chronoq.ports.store import Store

from .helpers import T0, at, claim_due, claim_runs, job_now, make_job, runs_of


def fired(job: Job) -> Run:
    run = fire_at_insert(job, T0)
    assert run is not None
    return run


async def test_the_run_is_queued_with_its_job_and_no_picker_fires_it_again(store: Store) -> None:
    job = make_job(next_fire_at=T0)
    run = fired(job)
    scheduled = make_job(next_fire_at=at(5))
    await store.insert_jobs([job, scheduled], runs=[run])

    (stored,) = await runs_of(store, job)
    assert (stored.run_id, stored.status, stored.attempt) == (run.run_id, RunStatus.QUEUED, 1)
    assert (stored.scheduled_for, stored.triggered_at, stored.available_at) == (T0, T0, T0)
    after = await job_now(store, job)
    assert (after.next_fire_at, after.fire_count, after.status) == (None, 1, JobStatus.PENDING)
    assert await runs_of(store, scheduled) == []
    assert await store.next_due_at(None) == at(5)  # only the job left to a picker
    assert [r.job_id for r in await claim_due(store, at(10))] == [scheduled.job_id]

    claimed = await claim_runs(store, "w1", at(10))
    assert {c.run_id for c in claimed} >= {run.run_id}
    mine = next(c for c in claimed if c.run_id == run.run_id)
    assert mine.payload == job.payload
    assert (await job_now(store, job)).status is JobStatus.RUNNING


async def test_all_or_none_a_refused_insert_leaves_no_run(store: Store) -> None:
    taken = make_job(next_fire_at=at(100))
    await store.insert_jobs([taken])
    job = make_job(next_fire_at=T0)
    run = fired(job)
    with pytest.raises(ConflictError):
        await store.insert_jobs([job, taken], runs=[run])
    assert await store.get_job(job.user_id, job.job_id) is None
    assert await claim_runs(store, "w1", at(1)) == []


async def test_runs_never_go_with_if_absent(store: Store) -> None:
    job = make_job(next_fire_at=T0)
    run = fired(job)
    with pytest.raises(ValueError, match="if_absent"):
        await store.insert_jobs([job], if_absent=True, runs=[run])
    assert await store.get_job(job.user_id, job.job_id) is None


@pytest.mark.parametrize("case", ["another_jobs_run", "two_runs_of_one_job", "a_retry"])
async def test_runs_that_are_not_first_fires_of_the_insert_are_refused(
    store: Store, case: str
) -> None:
    job, other = make_job(next_fire_at=T0), make_job(next_fire_at=T0)
    run = fired(job)
    runs = {
        "another_jobs_run": [fired(other)],
        "two_runs_of_one_job": [run, fired(job)],
        "a_retry": [replace(run, attempt=2)],
    }[case]
    with pytest.raises(ValueError):
        await store.insert_jobs([job], runs=runs)
    assert await store.get_job(job.user_id, job.job_id) is None
    assert await claim_runs(store, "w1", at(1)) == []
