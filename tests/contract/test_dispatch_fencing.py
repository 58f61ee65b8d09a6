"""Dispatch contract: fencing — ``fence_shards`` records shard owners under an epoch, and a
fenced ``claim_due`` claims only what the newest record gives to its (owner, epoch)."""

from __future__ import annotations

from chronoq.domain.jobs import Job
from chronoq.ports.store import Store

from .helpers import T0, at, claim_due, job_now, make_job


async def _one_job_per_shard(store: Store, shards: tuple[int, ...]) -> dict[int, Job]:
    jobs = {s: make_job(shard_id=s, next_fire_at=at(-s)) for s in shards}
    await store.insert_jobs(list(jobs.values()))
    return jobs


async def test_fence_shards_applies_only_a_newer_epoch(store: Store) -> None:
    assert await store.fence_shards(1, {0: "p1"}) is True  # a fresh store takes any epoch >= 1
    assert await store.fence_shards(1, {0: "p2"}) is False  # the same epoch again
    assert await store.fence_shards(5, {0: "p2"}) is True  # epochs may skip
    assert await store.fence_shards(4, {0: "p3"}) is False  # a deposed leader's late write
    assert await store.fence_shards(5, {0: "p3"}) is False
    assert await store.fence_shards(6, {}) is True


async def test_a_fenced_claim_takes_only_the_owners_shards_at_the_current_epoch(
    store: Store,
) -> None:
    jobs = await _one_job_per_shard(store, (1, 2, 3))
    assert await store.fence_shards(7, {1: "p1", 2: "p2", 3: "p1"})

    runs = await claim_due(store, T0, owner="p1", epoch=7)

    assert sorted(r.job_id for r in runs) == sorted([jobs[1].job_id, jobs[3].job_id])
    (theirs,) = await claim_due(store, T0, owner="p2", epoch=7)
    assert theirs.job_id == jobs[2].job_id


async def test_a_fenced_claim_with_a_stale_or_future_epoch_claims_nothing(store: Store) -> None:
    jobs = await _one_job_per_shard(store, (1,))
    assert await store.fence_shards(3, {1: "p1"})

    assert await claim_due(store, T0, owner="p1", epoch=2) == []
    assert await claim_due(store, T0, owner="p1", epoch=4) == []
    assert (await job_now(store, jobs[1])).next_fire_at == at(-1)  # untouched
    assert len(await claim_due(store, T0, owner="p1", epoch=3)) == 1


async def test_a_fenced_claim_by_another_owner_claims_nothing(store: Store) -> None:
    jobs = await _one_job_per_shard(store, (1,))
    assert await store.fence_shards(1, {1: "p1"})

    assert await claim_due(store, T0, owner="p2", epoch=1) == []
    assert await claim_due(store, T0, owner="p2", epoch=1, shards=[1]) == []
    assert (await job_now(store, jobs[1])).next_fire_at == at(-1)


async def test_a_fenced_claim_before_any_fence_claims_nothing(store: Store) -> None:
    await _one_job_per_shard(store, (0, 1))
    assert await claim_due(store, T0, owner="p1", epoch=1) == []
    assert await claim_due(store, T0, owner="p1", epoch=0) == []
    assert len(await claim_due(store, T0)) == 2  # unfenced (embedded mode) is not affected


async def test_a_fenced_claim_keeps_to_the_asked_shards_too(store: Store) -> None:
    jobs = await _one_job_per_shard(store, (1, 2, 3))
    assert await store.fence_shards(1, {1: "p1", 2: "p1", 3: "p1"})

    runs = await claim_due(store, T0, owner="p1", epoch=1, shards=[2, 3, 9])

    assert sorted(r.job_id for r in runs) == sorted([jobs[2].job_id, jobs[3].job_id])
    assert await claim_due(store, T0, owner="p1", epoch=1, shards=[]) == []


async def test_shards_missing_from_the_newest_fence_have_no_owner(store: Store) -> None:
    jobs = await _one_job_per_shard(store, (1, 2))
    assert await store.fence_shards(1, {1: "p1", 2: "p1"})
    assert await store.fence_shards(2, {2: "p1"})  # shard 1 is nobody's now

    (run,) = await claim_due(store, T0, owner="p1", epoch=2)
    assert run.job_id == jobs[2].job_id
    assert await claim_due(store, T0, owner="p1", epoch=2) == []
    (orphan,) = await claim_due(store, T0)  # only an unfenced claim reaches it
    assert orphan.job_id == jobs[1].job_id


async def test_a_newer_fence_moves_a_shard_and_the_old_owner_loses_it(store: Store) -> None:
    jobs = {s: make_job(shard_id=1, cron="@every 10s", next_fire_at=at(s)) for s in (0, 20)}
    await store.insert_jobs(list(jobs.values()))
    assert await store.fence_shards(1, {1: "p1"})
    (first,) = await claim_due(store, T0, owner="p1", epoch=1)
    assert first.job_id == jobs[0].job_id

    assert await store.fence_shards(2, {1: "p2"})
    assert await claim_due(store, at(20), owner="p1", epoch=1) == []  # stale epoch
    assert await claim_due(store, at(20), owner="p1", epoch=2) == []  # not its shard now
    runs = await claim_due(store, at(20), owner="p2", epoch=2)
    assert sorted((r.job_id, r.scheduled_for) for r in runs) == sorted(
        [(jobs[0].job_id, at(10)), (jobs[20].job_id, at(20))]
    )


async def test_a_refused_fence_leaves_the_record_as_it_was(store: Store) -> None:
    jobs = await _one_job_per_shard(store, (1,))
    assert await store.fence_shards(4, {1: "p1"})
    assert await store.fence_shards(3, {1: "thief"}) is False

    assert await claim_due(store, T0, owner="thief", epoch=3) == []
    assert await claim_due(store, T0, owner="thief", epoch=4) == []
    (run,) = await claim_due(store, T0, owner="p1", epoch=4)
    assert run.job_id == jobs[1].job_id


async def test_an_unfenced_claim_ignores_the_fence(store: Store) -> None:
    await _one_job_per_shard(store, (1, 2))
    assert await store.fence_shards(1, {1: "p1"})
    assert len(await claim_due(store, T0, shards=[1, 2])) == 2
