"""PostgreSQL only: the hot statements' plans on a fresh database, and the statistics that
keep them right while a young database grows (``adapters.postgres.statistics``).

Plans are checked as PostgreSQL would cache them for asyncpg's prepared statements:
``PREPARE`` + ``EXPLAIN EXECUTE`` under ``plan_cache_mode = force_generic_plan`` (the
worst case: a generic plan made once and kept until the next ANALYZE).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from chronoq.adapters.postgres import PostgresStore, sql
from chronoq.adapters.postgres.statistics import MIN_ROWS, GrowthAnalyzer
from tests.support.waiting import poll

from .conftest import CONNECT_TIMEOUT
from .helpers import make_job

SEED_JOBS = (
    "INSERT INTO jobs (job_id, user_id, project_id, payload, payload_size, next_fire_at,"
    " shard_id, status, max_retries, created_at, updated_at)"
    " SELECT gen_random_uuid(), 'u', 'default', 'noop', 4,"
    " CASE WHEN i % 4 = 0 THEN now() END, i % 256,"
    " CASE WHEN i % 4 = 0 THEN 'PENDING' ELSE 'RUNNING' END, 0, now(), now()"
    " FROM generate_series(1, $1::int) i"
)
SEED_RUNS = (
    "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
    " triggered_at, available_at, lease_owner, lease_until)"
    " SELECT gen_random_uuid(), job_id, user_id, now(), 1,"
    " CASE WHEN row_number() OVER () % 2 = 0 THEN 'QUEUED' ELSE 'RUNNING' END,"  # half each,
    " now(), now(), 'w', now()"  # and never none RUNNING (random() gave none 1 time in 64)
    " FROM jobs j WHERE status = 'RUNNING'"
    " AND NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = j.job_id)"
)


@pytest.fixture
async def conn(pg_database: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:  # only the statements under test analyze (autovacuum may visit at any time)
        await connection.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
        await connection.execute("ALTER TABLE job_runs SET (autovacuum_enabled = false)")
        yield connection
    finally:
        await connection.close()


async def _seed(conn: Any, jobs: int) -> None:
    await conn.execute(SEED_JOBS, jobs)
    await conn.execute(SEED_RUNS)


def _literal(value: Any) -> str:
    if isinstance(value, list):
        return "ARRAY[" + ",".join(f"'{v}'::uuid" for v in value) + "]::uuid[]"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


class _Rollback(Exception):
    pass


class Prepared:
    """A statement prepared on ``conn`` as asyncpg prepares it (``PREPARE``), run like a
    hot statement (each run rolled back): after five runs PostgreSQL decides whether to
    keep a generic plan, and ``plan()`` shows what a run would use now."""

    def __init__(self, conn: Any, statement: str, *args: Any) -> None:
        self.conn = conn
        self.statement = statement
        self.args = args
        self.name = f"p_{uuid.uuid4().hex[:8]}"

    def _call(self) -> str:
        return f"EXECUTE {self.name}({', '.join(_literal(a) for a in self.args)})"

    async def _rolled_back(self, text: str) -> list[Any]:
        rows: list[Any] = []
        try:
            async with self.conn.transaction():
                rows = await self.conn.fetch(text)
                raise _Rollback
        except _Rollback:
            return rows

    async def prepare(self, runs: int = 8) -> Prepared:
        await self.conn.execute(f"PREPARE {self.name} AS {self.statement}")
        for _ in range(runs):
            await self._rolled_back(self._call())
        return self

    async def plan(self) -> str:
        return "\n".join(
            r[0] for r in await self._rolled_back("EXPLAIN (COSTS OFF) " + self._call())
        )


async def _hot(conn: Any) -> dict[str, Prepared]:
    """The hot statements, each for one row (light load), prepared and run 8 times."""
    now = datetime.now(UTC)
    run = await conn.fetchval("SELECT run_id FROM job_runs WHERE status = 'RUNNING' LIMIT 1")
    statements = {
        "LOCK_RUNS": Prepared(conn, sql.LOCK_RUNS, [run]),
        "LOCK_JOBS_OF_RUNS": Prepared(conn, sql.LOCK_JOBS_OF_RUNS, [run]),
        "CLAIM_RUNS": Prepared(conn, sql.CLAIM_RUNS, now, 1, "w2", now, now),
        "CLAIM_DUE_ALL": Prepared(conn, sql.CLAIM_DUE_ALL, now, 1),
    }
    return {name: await p.prepare() for name, p in statements.items()}


async def _plans(hot: dict[str, Prepared]) -> dict[str, str]:
    return {name: await p.plan() for name, p in hot.items()}


INTENDED = {
    "LOCK_RUNS": ("job_runs_pkey",),
    "LOCK_JOBS_OF_RUNS": ("job_runs_pkey", "jobs_pkey"),
    "CLAIM_RUNS": ("runs_queued", "jobs_pkey"),
    "CLAIM_DUE_ALL": ("jobs_due",),
}
"""The indexes each hot statement must use for one row, whatever the table's size."""


def _assert_intended(plans: dict[str, str]) -> None:
    for name, indexes in INTENDED.items():
        for index in indexes:
            assert index in plans[name], (name, plans[name])
        assert "Seq Scan on jobs" not in plans[name], (name, plans[name])
        assert "Seq Scan on job_runs" not in plans[name], (name, plans[name])


async def test_a_fresh_database_gets_statistics_and_index_plans_once_grown(
    conn: Any, pg_database: str
) -> None:
    # Just migrated: never analyzed (reltuples -1; PostgreSQL plans it as >= 10 pages).
    reltuples = dict(
        await conn.fetch(
            "SELECT relname, reltuples FROM pg_class WHERE relname IN ('jobs', 'job_runs')"
        )
    )
    assert reltuples == {"jobs": -1, "job_runs": -1}
    await _seed(conn, 8)
    hot = await _hot(conn)  # prepared and run while tiny, as at a deployment's first jobs
    await _seed(conn, 20_000)
    # A generic plan cached while tiny may scan a whole table (CLAIM_RUNS's job update
    # did, on PostgreSQL 15) until an ANALYZE drops it: the store's growth check does.
    await conn.execute("SELECT pg_stat_force_next_flush()")
    pool = await asyncpg.create_pool(pg_database, min_size=1, max_size=1)
    analyzer = GrowthAnalyzer(lambda: pool, check_every=1)
    try:
        analyzer.wrote(1)
        await analyzer.close()
    finally:
        await pool.close()
    assert analyzer.analyzed == [("job_runs", "jobs")]
    _assert_intended(await _plans(hot))


async def test_statistics_of_a_tiny_table_make_seq_scans_until_the_next_analyze(
    conn: Any,
) -> None:
    # Why the migrations do not ANALYZE and the store re-analyzes a grown table: plans
    # cached on statistics of a tiny table read whole tables once it has grown.
    await _seed(conn, 8)
    await conn.execute("ANALYZE jobs, job_runs")  # as autovacuum may, early on
    hot = await _hot(conn)
    await _seed(conn, 20_000)
    stale = await _plans(hot)
    assert "Seq Scan on job_runs" in stale["LOCK_RUNS"], stale["LOCK_RUNS"]
    await conn.execute("ANALYZE jobs, job_runs")  # invalidates the cached plans
    _assert_intended(await _plans(hot))


async def test_the_store_analyzes_a_table_that_outgrew_its_statistics(
    conn: Any, pg_database: str
) -> None:
    await _seed(conn, 8)
    await conn.execute("ANALYZE jobs, job_runs")  # tiny statistics, as autovacuum may take
    lookup = await Prepared(
        conn, "SELECT job_id FROM jobs WHERE job_id = ANY($1::uuid[])", [str(uuid.uuid4())]
    ).prepare()
    store = PostgresStore(pg_database)
    await store.start()
    try:

        async def analyzed() -> float:
            await store.insert_jobs([make_job(next_fire_at=None) for _ in range(500)])
            value = await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'jobs'")
            return float(value) if value >= MIN_ROWS else 0.0

        assert await poll(analyzed, within=30.0, interval=0.2) >= MIN_ROWS
    finally:
        await store.close()
    assert "jobs_pkey" in await lookup.plan()  # the plan cached while tiny was dropped


async def test_a_table_is_analyzed_only_once_it_doubled(conn: Any, pg_database: str) -> None:
    pool = await asyncpg.create_pool(pg_database, min_size=1, max_size=1)
    analyzer = GrowthAnalyzer(lambda: pool, check_every=1)
    try:
        await _seed(conn, MIN_ROWS - 100)  # under MIN_ROWS jobs: nothing to do
        await conn.execute("SELECT pg_stat_force_next_flush()")
        analyzer.wrote(1)
        await analyzer.close()
        assert analyzer.analyzed == []
        await _seed(conn, 200)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        analyzer.wrote(1)
        await analyzer.close()
        assert analyzer.analyzed == [("jobs",)]  # job_runs holds 3/4 of them: not yet
        analyzer.wrote(1)
        await analyzer.close()
        assert analyzer.analyzed == [("jobs",)]  # analyzed at ~1,100 rows: not doubled since
    finally:
        await pool.close()
