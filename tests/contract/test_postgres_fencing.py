"""PostgreSQL only: the store's own fence against claims in flight.

``fence_shards`` must wait for fenced claims that already read the record, and a
claim that meets a fence in flight must wait for it and then see the new epoch:
no claim straddles two epochs. The generic rules (which epoch applies, who may
claim what) are in ``test_dispatch_fencing`` for every adapter.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from chronoq.adapters.postgres import PostgresStore
from chronoq.adapters.postgres.picker import owned_shards
from chronoq.domain.jobs import Run
from chronoq.errors import UnavailableError

from .conftest import CONNECT_TIMEOUT
from .helpers import T0, at, claim_due, make_job

DEADLINE = 10.0


@pytest.fixture
async def store(pg_database: str) -> AsyncIterator[PostgresStore]:
    started = PostgresStore(pg_database, min_size=2, max_size=4)
    await started.start()
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture
def conn(pg_conn: Any) -> Any:
    return pg_conn


@pytest.fixture
async def observer(pg_database: str) -> AsyncIterator[Any]:
    """A session outside every transaction of the test, to watch ``pg_stat_activity``
    (which a session reads as one snapshot per transaction)."""
    connection = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        yield connection
    finally:
        await connection.close()


async def eventually(probe: Callable[[], Awaitable[bool]], within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.01)


def waiting_on_a_lock(observer: Any, task: asyncio.Future[Any]) -> Callable[[], Awaitable[bool]]:
    """A probe: some session of the database waits on a lock (or ``task`` ended early)."""

    async def probe() -> bool:
        waiting = await observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(waiting) or task.done()

    return probe


async def test_the_store_fences_without_any_coordination_table(
    store: PostgresStore, conn: Any
) -> None:
    """The store reads its own record only: with the coordination's tables gone, fencing
    and fenced claims work exactly the same."""
    for table in ("shard_assignments", "assignment_epoch", "leader_lease", "members"):
        await conn.execute(f"DROP TABLE {table}")
    jobs = {s: make_job(shard_id=s, next_fire_at=at(-s)) for s in (1, 2, 3, 4)}
    await store.insert_jobs(list(jobs.values()))
    assert await store.fence_shards(7, {1: "p1", 2: "p1", 3: "p2"})

    assert await claim_due(store, T0, owner="p1", epoch=6) == []
    assert await claim_due(store, T0, owner="p3", epoch=7) == []
    (only,) = await claim_due(store, T0, owner="p1", epoch=7, shards=[2, 3, 4])
    assert only.job_id == jobs[2].job_id
    (theirs,) = await claim_due(store, T0, owner="p2", epoch=7)
    assert theirs.job_id == jobs[3].job_id
    assert await store.next_due_at(None) == at(-4)  # shard 4 has no owner: it waits


async def test_a_claim_meeting_a_fence_in_flight_waits_then_claims_nothing(
    store: PostgresStore, conn: Any, observer: Any
) -> None:
    assert await store.fence_shards(7, {1: "p1"})
    await store.insert_jobs([make_job(shard_id=1, next_fire_at=T0)])
    async with conn.transaction():  # a fence moving shard 1 to p2 at epoch 8, not committed
        await conn.execute("SELECT epoch FROM fence_epoch FOR UPDATE")
        await conn.execute("SELECT owner FROM fence_owners ORDER BY owner FOR UPDATE")
        await conn.execute("UPDATE fenced_shards SET owner = 'p2', epoch = 8")
        await conn.execute("DELETE FROM fence_owners")
        await conn.execute("INSERT INTO fence_owners (owner, epoch) VALUES ('p2', 8)")
        await conn.execute("UPDATE fence_epoch SET epoch = 8")
        claim = asyncio.ensure_future(claim_due(store, T0, owner="p1", epoch=7))
        await eventually(waiting_on_a_lock(observer, claim))
        assert not claim.done(), "the fenced claim must wait for the fence"
    assert await asyncio.wait_for(claim, DEADLINE) == []
    (run,) = await claim_due(store, T0, owner="p2", epoch=8)
    assert run.scheduled_for == T0


async def test_fence_shards_waits_for_a_claim_in_flight(
    store: PostgresStore, conn: Any, observer: Any
) -> None:
    assert await store.fence_shards(7, {1: "p1", 2: "p1"})
    async with conn.transaction():  # a claim by (p1, 7) that read its fence rows
        owned = await owned_shards(conn, "p1", 7)
        assert owned == [1, 2]
        fence = asyncio.ensure_future(store.fence_shards(8, {1: "p2"}))
        await eventually(waiting_on_a_lock(observer, fence))
        assert not fence.done(), "fence_shards must wait for the claim to commit"
    assert await asyncio.wait_for(fence, DEADLINE) is True
    assert await owned_shards(conn, "p1", 7) == []
    assert await owned_shards(conn, "p2", 8) == [1]


async def test_a_fenced_claim_locks_its_owner_row_only(
    store: PostgresStore, conn: Any, observer: Any
) -> None:
    """Each row a transaction locks is a WAL record: a claim takes one lock, its owner's
    row of ``fence_owners``, not one per shard it owns; the record follows every fence."""
    assert await store.fence_shards(7, {1: "p1", 2: "p1", 3: "p2"})
    assert dict(await conn.fetch("SELECT owner, epoch FROM fence_owners")) == {"p1": 7, "p2": 7}
    async with conn.transaction():  # a claim by (p1, 7) in flight
        assert await owned_shards(conn, "p1", 7) == [1, 2]
        nowait = "SELECT 1 FROM {} FOR UPDATE NOWAIT"
        assert len(await observer.fetch(nowait.format("fenced_shards"))) == 3
        assert len(await observer.fetch(nowait.format("fence_owners WHERE owner = 'p2'"))) == 1
        with pytest.raises(asyncpg.LockNotAvailableError):
            await observer.fetch(nowait.format("fence_owners WHERE owner = 'p1'"))
    assert await store.fence_shards(8, {1: "p2", 2: "p3"})
    assert dict(await conn.fetch("SELECT owner, epoch FROM fence_owners")) == {"p2": 8, "p3": 8}


async def test_a_fence_blocked_too_long_gives_up_and_changes_nothing(
    store: PostgresStore, conn: Any
) -> None:
    """A claim stuck in a dead client's transaction must not stall the leader: the fence
    fails as unavailable (the leader tries again) and leaves the record as it was."""
    assert await store.fence_shards(7, {1: "p1"})
    async with conn.transaction():
        await owned_shards(conn, "p1", 7)
        with pytest.raises(UnavailableError):
            await asyncio.wait_for(store.fence_shards(8, {1: "p2"}), DEADLINE)
    assert await owned_shards(conn, "p1", 7) == [1]
    assert await conn.fetchval("SELECT epoch FROM fence_epoch") == 7
    assert await store.fence_shards(8, {1: "p2"})


async def test_concurrent_fenced_claims_never_straddle_a_fence(pg_database: str, conn: Any) -> None:
    """Two pickers claim non-stop while the leader moves every shard between them, fence
    after fence. A claim made under epoch e must have committed before fence e + 1
    returned: its runs are in the table as seen right after that fence. And every claim
    took only the shards its owner had at its epoch."""
    pickers = PostgresStore(pg_database, min_size=2, max_size=4)
    leader = PostgresStore(pg_database, min_size=1, max_size=1)
    await asyncio.gather(pickers.start(), leader.start())
    try:
        jobs = [make_job(shard_id=i % 4, next_fire_at=at(-i / 1000)) for i in range(1500)]
        await pickers.insert_jobs(jobs)
        shard_of = {j.job_id: j.shard_id for j in jobs}
        owners_at = {e: _owners(e) for e in range(1, 12)}
        assert await leader.fence_shards(1, owners_at[1])
        current = {"epoch": 1}
        claims: list[tuple[str, int, list[Run]]] = []
        seen_after: dict[int, set[str]] = {}
        stop = asyncio.Event()

        async def picker(name: str) -> None:
            while not stop.is_set():
                epoch = current["epoch"]  # as read from the coordination, maybe stale
                runs = await claim_due(pickers, T0, owner=name, epoch=epoch, limit=3)
                claims.append((name, epoch, runs))
                await asyncio.sleep(0)

        async def fences() -> None:
            for epoch in range(2, 12):
                before = len(claims)

                async def claimed_meanwhile(n: int = before) -> bool:
                    return len(claims) >= n + 4

                await eventually(claimed_meanwhile)
                assert await leader.fence_shards(epoch, owners_at[epoch])
                rows = await conn.fetch("SELECT run_id FROM job_runs")
                seen_after[epoch] = {str(r[0]) for r in rows}
                current["epoch"] = epoch
            stop.set()

        await asyncio.wait_for(asyncio.gather(picker("p1"), picker("p2"), fences()), 60)
    finally:
        await asyncio.gather(pickers.close(), leader.close())

    fires = Counter(r.job_id for _, _, runs in claims for r in runs)
    assert fires and max(fires.values()) == 1
    for name, epoch, runs in claims:
        for run in runs:
            assert owners_at[epoch][shard_of[run.job_id]] == name, (name, epoch)
            if epoch + 1 in seen_after:
                assert run.run_id in seen_after[epoch + 1], f"a claim at {epoch} straddled"
    assert len({epoch for _, epoch, runs in claims if runs}) >= 8  # both claimed all along


def _owners(epoch: int) -> dict[int, str]:
    """Four shards, two per picker; each epoch moves two of them to the other picker."""
    return {s: "p1" if (s + epoch) % 4 < 2 else "p2" for s in range(4)}
