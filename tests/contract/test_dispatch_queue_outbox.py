"""Outbox contract (``ports.dispatch.Outbox``) on the stores that keep one: PostgreSQL and
memory. The run table is the outbox of an external run queue (``--dispatch``): a QUEUED
run is unpublished until ``mark_published``, and unpublished again whenever it re-enters
QUEUED, and ``unpublished_runs`` says each run's queue (its broker queue); ``queued_runs``
and ``queued_queues`` only read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from chronoq.adapters.memory import MemoryStore
from chronoq.adapters.postgres import PostgresStore
from chronoq.domain.states import RunStatus
from chronoq.ports.dispatch import ClaimRunsParams, Outbox, OutboxParams

from .helpers import LEASE, T0, at, claim_due, claim_runs, make_job, reap, release, runs_of


@pytest.fixture(params=["memory", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MemoryStore | PostgresStore]:
    """A started store that keeps an outbox, on a fresh database."""
    if request.param == "memory":
        chosen: MemoryStore | PostgresStore = MemoryStore()
    else:
        chosen = PostgresStore(request.getfixturevalue("pg_database"), min_size=1, max_size=4)
    await chosen.start()
    try:
        yield chosen
    finally:
        await chosen.close()


def pending(now: datetime, *, republish_before: datetime | None = None) -> OutboxParams:
    """Everything available within 5 s and settled (triggered 2 s before ``now``)."""
    return OutboxParams(
        horizon=now + timedelta(seconds=5),
        settled_before=now - timedelta(seconds=2),
        republish_before=republish_before,
    )


def run_ids(due: list[tuple[str, str]]) -> list[str]:
    return [run_id for run_id, _queue in due]


async def test_both_stores_implement_the_port(store: Outbox) -> None:
    assert isinstance(store, Outbox)


async def test_a_new_run_is_unpublished_once_settled_and_until_marked(
    store: MemoryStore | PostgresStore,
) -> None:
    job = make_job(next_fire_at=at(0))
    await store.insert_jobs([job])
    (run,) = await claim_due(store, T0)

    assert run_ids(await store.unpublished_runs(pending(at(1)))) == []  # its picker is sending it
    assert run_ids(await store.unpublished_runs(pending(at(3)))) == [run.run_id]

    assert await store.mark_published([run.run_id, "not-an-id"], at(3)) == 1
    assert run_ids(await store.unpublished_runs(pending(at(4)))) == []
    # Published long ago and still QUEUED: due again (its message is presumed lost).
    assert await store.unpublished_runs(pending(at(4), republish_before=at(3))) == []
    due = await store.unpublished_runs(pending(at(70), republish_before=at(10)))
    assert run_ids(due) == [run.run_id]


async def test_only_runs_available_by_the_horizon_and_earliest_first(
    store: MemoryStore | PostgresStore,
) -> None:
    late, soon, now_job = (make_job(next_fire_at=at(s)) for s in (30, 4, 0))
    await store.insert_jobs([late, soon, now_job])
    runs = await claim_due(store, T0, horizon=at(30))
    ids = {r.job_id: r.run_id for r in runs}

    assert run_ids(await store.unpublished_runs(pending(at(3)))) == [
        ids[now_job.job_id],
        ids[soon.job_id],
    ]
    limited = OutboxParams(horizon=at(40), settled_before=at(2), limit=1)
    assert run_ids(await store.unpublished_runs(limited)) == [ids[now_job.job_id]]


async def test_leased_and_ended_runs_are_not_in_the_outbox_and_cannot_be_marked(
    store: MemoryStore | PostgresStore,
) -> None:
    job = make_job(next_fire_at=at(0))
    await store.insert_jobs([job])
    (run,) = await claim_due(store, T0)
    await claim_runs(store, "w1", T0)

    assert await store.unpublished_runs(pending(at(10), republish_before=at(10))) == []
    assert await store.mark_published([run.run_id], at(10)) == 0


@pytest.mark.parametrize("how", ["reaped", "released"])
async def test_a_requeued_run_is_unpublished_again(
    store: MemoryStore | PostgresStore, how: str
) -> None:
    job = make_job(next_fire_at=at(0))
    await store.insert_jobs([job])
    (run,) = await claim_due(store, T0)
    assert await store.mark_published([run.run_id], at(0)) == 1
    await claim_runs(store, "w1", T0)  # leased, never started

    if how == "reaped":
        assert await reap(store, at(5), live_workers=frozenset()) == 1
    else:
        assert await release(store, "w1", [run.run_id], at(5)) == 1

    (requeued,) = await runs_of(store, job)
    assert (requeued.run_id, requeued.status) == (run.run_id, RunStatus.QUEUED)
    # No republish age given: found only because entering QUEUED cleared the mark.
    assert run_ids(await store.unpublished_runs(pending(at(6)))) == [run.run_id]


async def test_a_retry_attempt_is_a_new_unpublished_run(store: MemoryStore | PostgresStore) -> None:
    job = make_job(next_fire_at=at(0))
    await store.insert_jobs([job])
    (run,) = await claim_due(store, T0)
    await store.mark_published([run.run_id], at(0))
    (claimed,) = await claim_runs(store, "w1", T0)
    assert await store.mark_started("w1", [claimed.run_id], at(1)) == [claimed.run_id]
    # The worker died after starting: the next attempt is a new run, available at retry_at.
    assert await reap(store, at(5), live_workers=frozenset(), retry_at=at(20)) == 1

    assert run_ids(await store.unpublished_runs(pending(at(10)))) == []  # not available soon
    (nxt,) = [r for r in await runs_of(store, job) if r.status is RunStatus.QUEUED]
    assert nxt.run_id != run.run_id and nxt.attempt == 2
    assert run_ids(await store.unpublished_runs(pending(at(16)))) == [nxt.run_id]


async def test_the_outbox_names_each_runs_queue_and_filters_by_queue(
    store: MemoryStore | PostgresStore,
) -> None:
    plain, fast = (
        make_job(next_fire_at=at(0)),
        replace(make_job(next_fire_at=at(0)), queue="fast.1"),
    )
    await store.insert_jobs([plain, fast])
    runs = {r.job_id: r.run_id for r in await claim_due(store, T0)}

    due = await store.unpublished_runs(pending(at(3)))
    assert sorted(due) == sorted([(runs[plain.job_id], "default"), (runs[fast.job_id], "fast.1")])
    only = OutboxParams(horizon=at(8), settled_before=at(1), queues=["fast.1"])
    assert await store.unpublished_runs(only) == [(runs[fast.job_id], "fast.1")]
    assert await store.mark_published(list(runs.values()), at(3)) == 2
    again = OutboxParams(horizon=at(8), settled_before=at(1), republish_before=at(4),
                         queues=["default", "other"])  # fmt: skip
    assert await store.unpublished_runs(again) == [(runs[plain.job_id], "default")]


async def test_queued_runs_reports_only_the_named_runs_still_queued(
    store: MemoryStore | PostgresStore,
) -> None:
    a, b, later = (make_job(next_fire_at=at(s)) for s in (0, 0, 60))
    await store.insert_jobs([a, b, later])
    runs = {r.job_id: r.run_id for r in await claim_due(store, T0, horizon=at(60))}
    leased = await claim_runs(store, "w1", T0)
    assert sorted(c.run_id for c in leased) == sorted([runs[a.job_id], runs[b.job_id]])
    asked = [runs[a.job_id], runs[later.job_id], "forged", "", "\x00", make_job().job_id]

    assert await store.queued_runs(asked) == {runs[later.job_id]: at(60)}
    assert await store.queued_runs([]) == {}
    (untouched,) = await runs_of(store, later)
    assert untouched.status is RunStatus.QUEUED  # a read: nothing leased


async def test_queued_queues_lists_the_queues_of_queued_runs_in_name_order(
    store: MemoryStore | PostgresStore,
) -> None:
    assert await store.queued_queues(10) == []
    names = ["zeta", "alpha", "default", "alpha", "m-1.x"]
    jobs = [replace(make_job(next_fire_at=at(0)), queue=name) for name in names]
    leased = replace(make_job(next_fire_at=at(0)), queue="leased-only")
    await store.insert_jobs([*jobs, leased])
    await claim_due(store, T0)
    only = frozenset({"leased-only"})
    params = ClaimRunsParams(
        worker_id="w1", now=T0, horizon=T0, lease_until=T0 + LEASE, queues=only
    )
    assert len(await store.claim_runs(params)) == 1

    assert await store.queued_queues(10) == ["alpha", "default", "m-1.x", "zeta"]
    assert await store.queued_queues(2) == ["alpha", "default"]
