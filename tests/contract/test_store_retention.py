"""Store contract: ``purge_finished`` — retention keeps what is live, drops what is old."""

from __future__ import annotations

from chronoq.domain.jobs import ClaimedRun
from chronoq.domain.states import RunStatus
from chronoq.ports.store import Store

from .helpers import T0, at, claim_due, claim_runs, job_now, make_job, outcome, runs_of


async def test_purge_drops_old_finished_runs_and_jobs_and_keeps_the_rest(store: Store) -> None:
    done = make_job(payload=None, payload_ref="blob:payloads/done")
    recurring = make_job(cron="@every 1s")
    pending = make_job(next_fire_at=at(3600))
    running = make_job()
    await store.insert_jobs([done, recurring, pending, running])
    claimed = {c.job_id: c for c in await _fire_and_lease(store)}
    assert set(claimed) == {done.job_id, recurring.job_id, running.job_id}
    finished = [outcome(claimed[j.job_id], RunStatus.COMPLETED) for j in (done, recurring)]
    assert await store.complete_runs(finished) == [True, True]

    assert await store.purge_finished(T0) == []  # nothing is older than T0: all kept
    assert len(await runs_of(store, done)) == 1

    refs = await store.purge_finished(at(3600))
    assert refs == ["blob:payloads/done"]
    assert await store.get_job(done.user_id, done.job_id) is None
    assert await runs_of(store, recurring) == []  # its old run went ...
    assert (await job_now(store, recurring)).next_fire_at is not None  # ... the schedule stays
    assert await store.get_job(pending.user_id, pending.job_id) is not None
    (still_running,) = await runs_of(store, running)
    assert still_running.status is RunStatus.RUNNING  # live runs are never purged


async def test_purge_respects_the_limit(store: Store) -> None:
    jobs = [make_job() for _ in range(5)]
    await store.insert_jobs(jobs)
    leased = await _fire_and_lease(store)
    assert (
        await store.complete_runs([outcome(c, RunStatus.COMPLETED) for c in leased]) == [True] * 5
    )
    assert len(await store.purge_finished(at(3600), limit=2)) <= 2
    total = 0
    for _ in range(5):
        await store.purge_finished(at(3600), limit=2)
    for job in jobs:
        total += await store.get_job(job.user_id, job.job_id) is None
    assert total == 5


async def _fire_and_lease(store: Store) -> list[ClaimedRun]:
    await claim_due(store, T0)
    return await claim_runs(store, "w1", T0, limit=100)
