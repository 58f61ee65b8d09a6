"""The per-user limits' indexes on PostgreSQL (``adapters.postgres.limit_indexes``,
migration 013): absent until a limit is used, then built by the store in the background
(``CREATE INDEX CONCURRENTLY``), once in the cluster, rebuilt when a build was interrupted.
Why: ``jobs_user_active``'s predicate names ``jobs.status``, so while it exists no job
status change is a HOT update (docs/benchmarks.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chronoq.adapters.postgres import PostgresStore
from chronoq.adapters.postgres.limit_indexes import ACTIVE_JOBS, BUILD_LOCK, FIRES, VALIDITY
from chronoq.errors import LimitExceededError
from chronoq.ports.dispatch import ClaimDueParams
from tests.support.waiting import poll

from .helpers import T0, make_job


@pytest.fixture
def conn(pg_conn: Any) -> Any:
    return pg_conn


async def started(dsn: str) -> PostgresStore:
    store = PostgresStore(dsn, min_size=1, max_size=4)
    await store.start()
    return store


async def valid(conn: Any, name: str) -> bool | None:
    """True: built and valid; False: left INVALID; None: absent."""
    value: bool | None = await conn.fetchval(VALIDITY, name)
    return value


async def test_without_limits_neither_index_exists_or_is_built(conn: Any, pg_database: str) -> None:
    store = await started(pg_database)
    try:
        await store.insert_jobs([make_job()])
        await store.claim_due(ClaimDueParams(shards=None, now=T0, horizon=T0))
        await store._limit_indexes.settled()
    finally:
        await store.close()
    assert await valid(conn, ACTIVE_JOBS) is None and await valid(conn, FIRES) is None


async def test_a_limit_builds_its_index_once_and_counts_read_it(
    conn: Any, pg_database: str
) -> None:
    store = await started(pg_database)
    try:
        await store.insert_jobs([make_job(user_id="u")], max_active_per_user=5)
        await store._limit_indexes.settled()
        assert await valid(conn, ACTIVE_JOBS) is True
        assert await valid(conn, FIRES) is None  # only the limit that was used
        await store.claim_due(
            ClaimDueParams(shards=None, now=T0, horizon=T0, max_fires_per_minute=10)
        )
        await store._limit_indexes.settled()
        assert await valid(conn, FIRES) is True
    finally:
        await store.close()
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch(
            "EXPLAIN (FORMAT TEXT) SELECT count(*) FROM jobs WHERE user_id = 'u'"
            " AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"
        )
    plan = "\n".join(r[0] for r in rows)
    assert ACTIVE_JOBS in plan, plan  # the count's own predicate, spelled as the index's


async def test_an_interrupted_build_is_dropped_and_built_again(conn: Any, pg_database: str) -> None:
    await conn.execute(
        "CREATE INDEX jobs_user_active ON jobs (user_id)"
        " WHERE status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"
    )
    await conn.execute(  # what a killed CREATE INDEX CONCURRENTLY leaves behind
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'jobs_user_active'::regclass"
    )
    assert await valid(conn, ACTIVE_JOBS) is False
    store = await started(pg_database)
    try:
        await store.insert_jobs([make_job()], max_active_per_user=5)
        await store._limit_indexes.settled()
    finally:
        await store.close()
    assert await valid(conn, ACTIVE_JOBS) is True


async def test_one_builder_at_a_time_in_the_cluster(conn: Any, pg_database: str) -> None:
    """Another process holds the build lock: this one never waits on it (a waiting session
    would deadlock a concurrent build), it tries again later, and builds once it is free."""
    assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", BUILD_LOCK)
    store = await started(pg_database)
    store._limit_indexes._retry = 0.05
    try:
        await store.insert_jobs([make_job()], max_active_per_user=5)  # never blocks
        indexes = store._limit_indexes

        async def retried() -> bool:
            return indexes.tries >= 3

        assert await poll(retried, within=10), "it stopped trying"
        assert await valid(conn, ACTIVE_JOBS) is None  # not while another holds the lock
        await conn.execute("SELECT pg_advisory_unlock($1)", BUILD_LOCK)

        async def built() -> bool:
            return await valid(conn, ACTIVE_JOBS) is True

        assert await poll(built, within=10), "never built once the lock was free"
    finally:
        await store.close()


async def test_the_limits_stay_exact_while_the_index_is_missing(pg_database: str) -> None:
    """A count before the index exists reads the heap: same answer."""
    store = await started(pg_database)
    try:
        await store.insert_jobs([make_job(user_id="u") for _ in range(3)], max_active_per_user=3)
        with pytest.raises(LimitExceededError):
            await store.insert_jobs([make_job(user_id="u")], max_active_per_user=3)
        await store._limit_indexes.settled()
        with pytest.raises(LimitExceededError):
            await store.insert_jobs([make_job(user_id="u")], max_active_per_user=3)
        later = T0 + timedelta(seconds=1)
        await store.insert_jobs([make_job(user_id="v", next_fire_at=later)], max_active_per_user=3)
    finally:
        await store.close()
