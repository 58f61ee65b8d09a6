"""Store contract: the picker's side — claim_due (run + next fire in one call), next_due_at."""

from __future__ import annotations

from datetime import timedelta

from chronoq.domain.states import JobStatus, RunStatus
from chronoq.ports.store import Store

from .helpers import T0, at, claim_due, job_now, make_job, runs_of


async def test_claim_due_creates_the_run_and_advances_the_next_fire_together(
    store: Store,
) -> None:
    job = make_job(cron="@every 2s", next_fire_at=T0)
    await store.insert_jobs([job])

    (run,) = await claim_due(store, T0)

    assert run.job_id == job.job_id
    assert run.user_id == job.user_id
    assert run.scheduled_for == T0
    assert run.attempt == 1
    assert run.status is RunStatus.QUEUED
    assert run.triggered_at == T0
    assert run.available_at == T0
    assert run.started_at is None and run.lease_until is None and run.worker_id is None
    after = await job_now(store, job)
    assert after.next_fire_at == at(2)
    assert after.status is JobStatus.PENDING
    assert after.updated_at == T0
    assert await runs_of(store, job) == [run]

    assert await claim_due(store, at(1)) == []
    (second,) = await claim_due(store, at(2))
    assert second.scheduled_for == at(2)
    assert (await job_now(store, job)).next_fire_at == at(4)


async def test_missed_fires_coalesce_into_one_run_on_the_original_cadence(store: Store) -> None:
    job = make_job(cron="@every 1s", next_fire_at=T0)
    await store.insert_jobs([job])
    now = T0 + timedelta(hours=1, milliseconds=300)

    runs = await claim_due(store, now)

    assert [r.scheduled_for for r in runs] == [T0]
    following = (await job_now(store, job)).next_fire_at
    assert following is not None
    assert following > now
    assert following == T0 + timedelta(hours=1, seconds=1)  # anchored: whole seconds after T0
    assert await claim_due(store, now) == []
    assert len(await runs_of(store, job)) == 1


async def test_a_one_shot_job_fires_once(store: Store) -> None:
    job = make_job(cron=None, next_fire_at=at(5))
    await store.insert_jobs([job])
    (run,) = await claim_due(store, at(5))
    assert run.scheduled_for == at(5)
    after = await job_now(store, job)
    assert after.next_fire_at is None
    assert after.status is JobStatus.PENDING
    assert await claim_due(store, at(1000)) == []
    assert await store.next_due_at(None) is None


async def test_a_job_without_a_due_time_never_fires(store: Store) -> None:
    await store.insert_jobs([make_job(next_fire_at=None)])
    assert await claim_due(store, at(10_000)) == []


async def test_claim_due_respects_the_horizon(store: Store) -> None:
    soon, later, far = (make_job(next_fire_at=at(s)) for s in (0, 1, 10))
    await store.insert_jobs([far, soon, later])

    runs = await claim_due(store, T0, horizon=at(1))

    assert [(r.job_id, r.available_at, r.triggered_at) for r in runs] == [
        (soon.job_id, T0, T0),
        (later.job_id, at(1), T0),  # claimed ahead: it becomes available at its due time
    ]
    assert (await job_now(store, far)).next_fire_at == at(10)
    assert await store.next_due_at(None) == at(10)


async def test_claim_due_takes_the_earliest_first_up_to_the_limit(store: Store) -> None:
    jobs = [make_job(next_fire_at=at(-s)) for s in (3, 5, 1, 4, 2)]
    await store.insert_jobs(jobs)

    first = await claim_due(store, T0, limit=2)
    second = await claim_due(store, T0, limit=2)
    third = await claim_due(store, T0, limit=2)

    assert [r.scheduled_for for r in first] == [at(-5), at(-4)]
    assert [r.scheduled_for for r in second] == [at(-3), at(-2)]
    assert [r.scheduled_for for r in third] == [at(-1)]
    assert await claim_due(store, T0, limit=2) == []


async def test_claim_due_and_next_due_at_keep_to_the_given_shards(store: Store) -> None:
    one, two, three = (make_job(shard_id=s, next_fire_at=at(s)) for s in (1, 2, 3))
    await store.insert_jobs([one, two, three])

    assert await store.next_due_at(None) == at(1)
    assert await store.next_due_at([2, 3]) == at(2)
    assert await store.next_due_at([9]) is None
    assert await claim_due(store, at(10), shards=[]) == []

    runs = await claim_due(store, at(10), shards=[1, 3])

    assert sorted(r.job_id for r in runs) == sorted([one.job_id, three.job_id])
    assert await store.next_due_at([1, 3]) is None
    assert await store.next_due_at(None) == at(2)
    (last,) = await claim_due(store, at(10))
    assert last.job_id == two.job_id


async def test_next_due_and_next_available_are_empty_on_an_empty_store(store: Store) -> None:
    assert await store.next_due_at(None) is None
    assert await store.next_due_at([0, 1]) is None
    assert await store.next_available_at() is None


async def test_next_available_at_is_the_earliest_queued_run(store: Store) -> None:
    await store.insert_jobs([make_job(next_fire_at=at(s)) for s in (7, 3, 5)])
    await claim_due(store, T0, horizon=at(10))
    assert await store.next_available_at() == at(3)
