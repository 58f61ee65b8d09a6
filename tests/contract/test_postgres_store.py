"""PostgreSQL only: many pickers and workers at once, lock ordering, unreachable servers."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from chronoq.adapters.postgres import PostgresStore
from chronoq.domain.jobs import ClaimedRun, Run
from chronoq.domain.states import RUN_TERMINAL, RunStatus
from chronoq.errors import UnavailableError, ValidationError
from chronoq.ports.store import ClaimDueParams, ReapParams

from .conftest import ADMIN_DSN, CONNECT_TIMEOUT
from .helpers import T0, at, claim_due, claim_runs, make_job, outcome


@pytest.fixture
async def two_stores(pg_database: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores (two pools: two processes, as far as the database can tell)."""
    stores = (
        PostgresStore(pg_database, min_size=2, max_size=4),
        PostgresStore(pg_database, min_size=2, max_size=4),
    )
    await asyncio.gather(*(s.start() for s in stores))
    try:
        yield stores
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def _until_empty(step: Callable[[], Awaitable[list[Any]]]) -> list[Any]:
    """Call ``step`` until it returns nothing twice in a row (others may hold rows briefly)."""
    taken: list[Any] = []
    empty = 0
    while empty < 2:
        got = await step()
        taken.extend(got)
        empty = 0 if got else empty + 1
        await asyncio.sleep(0)
    return taken


async def test_concurrent_pickers_and_workers_never_double_claim(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two_stores
    one_shot = [make_job(next_fire_at=at(-i / 1000)) for i in range(300)]
    recurring = [make_job(cron="@every 1s", next_fire_at=T0) for _ in range(100)]
    await a.insert_jobs(one_shot + recurring)

    async def picker(store: PostgresStore) -> list[Run]:
        return await _until_empty(lambda: claim_due(store, T0, limit=7))

    picked = await asyncio.gather(*(picker(s) for s in (a, b, a, b)))
    runs = [r for batch in picked for r in batch]
    fires = Counter((r.job_id, r.scheduled_for) for r in runs)
    assert len(runs) == 400
    assert max(fires.values()) == 1
    assert all(len(batch) > 0 for batch in picked[:2]), "both stores should have claimed"
    for job in recurring[:10]:
        found = await b.get_job(job.user_id, job.job_id)
        assert found is not None and found.next_fire_at == at(1)

    async def worker(store: PostgresStore, worker_id: str) -> list[ClaimedRun]:
        return await _until_empty(lambda: claim_runs(store, worker_id, T0, limit=5))

    names = ["w1", "w2", "w3", "w4"]
    leased = await asyncio.gather(*(worker(s, n) for s, n in zip((a, b, a, b), names, strict=True)))
    ids = Counter(c.run_id for batch in leased for c in batch)
    assert len(ids) == 400
    assert max(ids.values()) == 1
    for name, batch in zip(names, leased, strict=True):
        for claimed in batch[:5]:
            (run,) = [
                r for r in await a.list_runs("alice", claimed.job_id) if r.run_id == claimed.run_id
            ]
            assert (run.status, run.worker_id) == (RunStatus.RUNNING, name)


async def test_mixed_concurrent_writers_do_not_deadlock(
    pg_database: str, two_stores: tuple[PostgresStore, PostgresStore]
) -> None:
    a, b = two_stores
    jobs = [make_job(max_retries=1, next_fire_at=at(-i / 1000)) for i in range(60)]
    await a.insert_jobs(jobs)
    await claim_due(a, T0)
    claimed = await claim_runs(a, "w1", T0, limit=100)
    assert len(claimed) == 60
    ids = [c.run_id for c in claimed]

    async def heartbeats() -> None:
        for i in range(20):
            await b.extend_leases("w1", ids[::-1] if i % 2 else ids, at(60 + i))

    async def completions() -> None:
        for chunk in range(0, 40, 5):
            batch = claimed[chunk : chunk + 5][::-1]
            await a.complete_runs(
                [outcome(c, RunStatus.RETRY_SCHEDULED, retry_at=at(5)) for c in batch]
            )

    async def cancels() -> None:
        for job in jobs[::3]:
            await b.cancel_job(job.user_id, job.job_id, at(2))

    async def handbacks() -> None:
        await a.release_runs("w1", ids[40:50][::-1])
        await b.reap_expired(ReapParams(now=at(1000), retry_at=at(1000), limit=5))

    await asyncio.gather(heartbeats(), completions(), cancels(), handbacks())

    for job in jobs:
        runs = await a.list_runs(job.user_id, job.job_id)
        assert sum(r.status in RUN_TERMINAL for r in runs) <= 1
    await asyncio.gather(a.close(), b.close())  # flush the backends' statistics
    conn = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        deadlocks = await conn.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert deadlocks == 0


async def test_a_fenced_claim_takes_only_the_owners_shards_at_its_epoch(pg_database: str) -> None:
    store = PostgresStore(pg_database)
    await store.start()
    admin = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        await admin.executemany(
            "INSERT INTO shard_assignments (shard_id, owner, epoch, assigned_at)"
            " VALUES ($1, $2, 7, now())",
            [(1, "p1"), (2, "p1"), (3, "p2")],
        )
        jobs = {s: make_job(shard_id=s, next_fire_at=at(-s)) for s in (1, 2, 3, 4)}
        await store.insert_jobs(list(jobs.values()))

        def fenced(owner: str, epoch: int, shards: list[int] | None = None) -> ClaimDueParams:
            return ClaimDueParams(shards=shards, now=T0, horizon=T0, owner=owner, epoch=epoch)

        assert await store.claim_due(fenced("p1", 6)) == []  # a stale epoch claims nothing
        assert await store.claim_due(fenced("p3", 7)) == []  # owns nothing
        (only,) = await store.claim_due(fenced("p1", 7, shards=[2, 3, 4]))
        assert only.job_id == jobs[2].job_id
        (rest,) = await store.claim_due(fenced("p1", 7))
        assert rest.job_id == jobs[1].job_id
        (theirs,) = await store.claim_due(fenced("p2", 7))
        assert theirs.job_id == jobs[3].job_id
        assert await store.next_due_at(None) == at(-4)  # unassigned shard 4 waits
        with pytest.raises(ValidationError):
            await store.claim_due(ClaimDueParams(shards=None, now=T0, horizon=T0, owner="p1"))
    finally:
        await admin.close()
        await store.close()


async def test_a_claim_racing_a_reassignment_never_takes_the_lost_shard(pg_database: str) -> None:
    store = PostgresStore(pg_database)
    await store.start()
    leader = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        await leader.execute(
            "INSERT INTO shard_assignments (shard_id, owner, epoch, assigned_at)"
            " VALUES (1, 'p1', 7, now())"
        )
        await store.insert_jobs([make_job(shard_id=1, next_fire_at=T0)])
        params = ClaimDueParams(shards=None, now=T0, horizon=T0, owner="p1", epoch=7)
        async with leader.transaction():  # the leader moves shard 1 to p2 at epoch 8
            await leader.execute(
                "UPDATE shard_assignments SET owner = 'p2', epoch = 8 WHERE shard_id = 1"
            )
            claim = asyncio.create_task(store.claim_due(params))
            await _until_blocked_on_a_lock(pg_database)
            assert not claim.done(), "the fenced claim must wait for the reassignment"
        assert await claim == []
        (run,) = await store.claim_due(
            ClaimDueParams(shards=None, now=T0, horizon=T0, owner="p2", epoch=8)
        )
        assert run.scheduled_for == T0
    finally:
        await leader.close()
        await store.close()


async def _until_blocked_on_a_lock(dsn: str, deadline: float = 5.0) -> None:
    """Poll (with a deadline) until some session of the database waits on a lock."""
    observer = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline
        while loop.time() < until:
            waiting = await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("no session waited on a lock")
    finally:
        await observer.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_server_is_unavailable() -> None:
    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{_free_port()}/chronoq", connect_timeout=2
    )
    with pytest.raises(UnavailableError):
        await store.start()
    with pytest.raises(UnavailableError):
        await store.get_job("alice", make_job().job_id)
    await store.close()


async def test_lost_connections_surface_as_unavailable_then_recover(pg_database: str) -> None:
    store = PostgresStore(pg_database, min_size=2, max_size=2)
    await store.start()
    job = make_job()
    await store.insert_jobs([job])
    admin = await asyncpg.connect(ADMIN_DSN, timeout=CONNECT_TIMEOUT)
    try:
        database = pg_database.rsplit("/", 1)[1]
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        outcomes: list[str] = []
        for _ in range(6):
            try:
                found = await store.get_job(job.user_id, job.job_id)
            except UnavailableError:
                outcomes.append("unavailable")
            else:
                assert found == job
                outcomes.append("ok")
        assert outcomes[-1] == "ok"
    finally:
        await admin.close()
        await store.close()
