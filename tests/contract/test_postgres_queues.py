"""PostgreSQL only: concurrency limits under concurrent claims, and the claim's plans
(``domain.queues``). The rules themselves are the shared contract tests' (every store)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from chronoq.adapters.postgres import PostgresStore
from chronoq.adapters.postgres.claims import _candidates_sql
from chronoq.adapters.postgres.outbox import QUEUED_QUEUES
from chronoq.adapters.postgres.sql import CLAIM_RUNS, JOB_QUEUE
from chronoq.domain.jobs import ClaimedRun
from chronoq.domain.queues import ClaimLimits
from chronoq.ports.dispatch import ClaimRunsParams

from .conftest import CONNECT_TIMEOUT
from .helpers import LEASE, at, claim_due, make_job

CLAIMERS = 6


@pytest.fixture
async def stores(pg_database: str) -> AsyncIterator[list[PostgresStore]]:
    """One store per claimer (separate pools: separate processes, as far as the database
    can tell)."""
    pool = [PostgresStore(pg_database, min_size=1, max_size=3) for _ in range(CLAIMERS)]
    await asyncio.gather(*(s.start() for s in pool))
    try:
        yield pool
    finally:
        await asyncio.gather(*(s.close() for s in pool))


def _params(worker: str, limits: ClaimLimits, limit: int = 50) -> ClaimRunsParams:
    now = at(100)
    return ClaimRunsParams(
        worker_id=worker, now=now, horizon=now, lease_until=now + LEASE, limit=limit,
        limits=limits,
    )  # fmt: skip


async def _running(dsn: str) -> list[tuple[str, str, int]]:
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    try:
        rows = await conn.fetch(
            "SELECT queue, user_id, count(*)::int FROM job_runs WHERE status = 'RUNNING'"
            " GROUP BY 1, 2"
        )
    finally:
        await conn.close()
    return [(r[0], r[1], r[2]) for r in rows]


async def test_claims_at_once_never_exceed_a_limit(
    stores: list[PostgresStore], pg_database: str
) -> None:
    """Six workers claim at the same moment, five rounds, under a queue limit of 3 and a
    user limit of 4: whatever the interleaving, the RUNNING runs never pass either."""
    jobs = [
        replace(make_job(next_fire_at=at(i % 10), user_id=f"u{i % 3}"), queue=q)
        for i, q in enumerate(["gpu", "default"] * 40)
    ]
    await stores[0].insert_jobs(jobs)
    assert len(await claim_due(stores[0], at(100))) == len(jobs)
    limits = ClaimLimits(per_queue={"gpu": 3}, per_user=4)
    total: list[ClaimedRun] = []
    for round_ in range(5):
        batches = await asyncio.gather(
            *(s.claim_runs(_params(f"w{round_}-{i}", limits)) for i, s in enumerate(stores))
        )
        total += [c for batch in batches for c in batch]
        running = await _running(pg_database)
        per_queue: dict[str, int] = {}
        per_user: dict[str, int] = {}
        for queue, user, count in running:
            per_queue[queue] = per_queue.get(queue, 0) + count
            per_user[user] = per_user.get(user, 0) + count
        assert per_queue.get("gpu", 0) <= 3, running
        assert all(n <= 4 for n in per_user.values()), running
    # The limits were reached, not merely respected by claiming nothing: 3 users x 4.
    assert len(total) == 12 and len({c.run_id for c in total}) == 12
    assert sum(n for q, _u, n in await _running(pg_database) if q == "gpu") == 3


async def _plan(dsn: str, statement: str, *args: Any) -> tuple[list[str], list[str]]:
    """The indexes a statement's plan reads, and what its sorts sort by."""
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    try:
        async with conn.transaction():  # EXPLAIN only: nothing runs
            row = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *args)
    finally:
        await conn.close()
    indexes: list[str] = []
    sorts: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            indexes.append(node["Index Name"])
        sorts.extend(node.get("Sort Key", []))
        for child in node.get("Plans", []):
            walk(child)

    walk((json.loads(row) if isinstance(row, str) else row)[0]["Plan"])
    return indexes, sorts


async def test_claims_walk_the_priority_indexes(
    stores: list[PostgresStore], pg_database: str
) -> None:
    """The common claim reads ``runs_queued_priority`` in order (no sort of the queue);
    a claim from one queue reads ``runs_queued_queue`` in order, with no sort either."""
    jobs = [
        replace(make_job(next_fire_at=at(i % 50)), queue=f"q{i % 20}", priority=i % 7)
        for i in range(2000)
    ]
    await stores[0].insert_jobs(jobs)
    await claim_due(stores[0], at(100))
    conn = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute("ANALYZE job_runs")
    finally:
        await conn.close()
    indexes, sorts = await _plan(pg_database, CLAIM_RUNS, at(100), 10, "w", at(130), at(100))
    assert "runs_queued_priority" in indexes, indexes
    # Only the leased rows (at most the limit) are sorted, for the reply: not the queue.
    assert not [key for key in sorts if key.startswith("r.")], sorts
    indexes, sorts = await _plan(pg_database, _candidates_sql(1, False, False), at(100), 10, "q3")
    assert "runs_queued_queue" in indexes and not sorts, (indexes, sorts)
    # A broker dispatch's worker of every queue asks which queues have QUEUED runs: one
    # probe of runs_queued_queue per queue (a loose scan), not a read of the backlog.
    indexes, sorts = await _plan(pg_database, QUEUED_QUEUES, 256)
    assert set(indexes) == {"runs_queued_queue"} and not sorts, (indexes, sorts)
    assert await stores[0].queued_queues(256) == sorted(f"q{i}" for i in range(20))


async def test_a_new_run_reads_its_jobs_queue_by_key_not_by_scanning_jobs(
    stores: list[PostgresStore], pg_database: str
) -> None:
    """The runs of a big claim take their jobs' queue and priority with one primary-key
    probe each (``sql.JOB_QUEUE``): a plain join hashed the whole jobs table instead."""
    jobs = [make_job(next_fire_at=at(i % 50)) for i in range(5000)]
    for i in range(0, len(jobs), 1000):
        await stores[0].insert_jobs(jobs[i : i + 1000])
    conn = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute("ANALYZE jobs")
    finally:
        await conn.close()
    batch = [j.job_id for j in jobs[:1000]]
    statement = (
        "SELECT t.j, jb.queue, jb.priority FROM unnest($1::uuid[]) AS t(j)"
        " CROSS JOIN LATERAL " + JOB_QUEUE + " jb"
    )
    indexes, _sorts = await _plan(pg_database, statement, batch)
    assert indexes == ["jobs_pkey"], indexes
