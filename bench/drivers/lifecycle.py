"""PostgreSQL's work per job along the store's batch path, without HTTP or processes: a
lever-measuring tool for issue 11 (run by hand; results in docs/benchmarks.md).

``python -m bench.drivers.lifecycle [--jobs N] [--batch B] [--set 'jobs:fillfactor=80']
[--sql 'DROP INDEX runs_queued']``

On a fresh database of a private PostgreSQL (``bench.postgres``: fsync on, the bench's
settings; its WAL is this run's alone) or of ``--admin``'s server, every batch goes through
``insert_jobs`` → ``claim_due`` → ``claim_runs`` → ``mark_started`` → ``complete_runs``
(no-op success) of one ``PostgresStore``, as the api, picker and worker do for a shell
job (a no-op ``echo`` run is never recorded as started: the worker skips ``mark_started``
for executors that finish inline; docs/benchmarks.md). Around the
whole loop it reads the WAL position (``pg_current_wal_lsn``), the database's commits and
the tables' updates
(``n_tup_upd``, ``n_tup_hot_upd``: HOT updates write no index entries), and prints them
per job. ``--set`` applies a table reloption first (e.g. a fillfactor that leaves room
for HOT updates); ``--sql`` runs a statement (what an index costs: drop it). The database
is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.postgres import bench_postgres
from chronoq.adapters.postgres import PostgresStore
from chronoq.domain.jobs import Job, RunOutcome
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.ports.dispatch import ClaimDueParams, ClaimRunsParams
from tests.support.postgres import create_database, drop_database

TABLES = ("jobs", "job_runs")
COUNTERS = (
    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,"
    " (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())"
)
UPDATES = (
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
    " WHERE relname = ANY($1::text[]) ORDER BY relname"
)


def _job(now: datetime) -> Job:
    return Job(
        job_id=str(uuid.uuid4()), user_id="bench", project_id="default", payload="noop",
        payload_ref=None, payload_size=4, cron_schedule=None, timezone=None,
        next_fire_at=now, shard_id=0, status=JobStatus.PENDING, max_retries=0,
        timeout_seconds=None, created_at=now, updated_at=now,
    )  # fmt: skip


async def lifecycle(store: PostgresStore, jobs: int, batch: int) -> None:
    for _ in range(0, jobs, batch):
        now = datetime.now(UTC)
        await store.insert_jobs([_job(now) for _ in range(batch)])
        await store.claim_due(ClaimDueParams(shards=None, now=now, horizon=now, limit=batch))
        later = datetime.now(UTC)
        claimed = await store.claim_runs(
            ClaimRunsParams(
                worker_id="w", now=later, horizon=later,
                lease_until=later + timedelta(seconds=30), limit=batch,
            )
        )  # fmt: skip
        started = await store.mark_started("w", [c.run_id for c in claimed], later)
        assert len(started) == len(claimed)
        done = datetime.now(UTC)
        outcomes = [
            RunOutcome(
                run_id=c.run_id,
                worker_id="w",
                attempt=c.attempt,
                status=RunStatus.COMPLETED,
                started_at=later,
                completed_at=done,
                output="noop",
                exit_code=0,
                error_message=None,
            )
            for c in claimed
        ]
        await store.complete_runs(outcomes)


async def measure(
    dsn: str, jobs: int, batch: int, settings: list[str], statements: list[str]
) -> dict[str, Any]:
    store = PostgresStore(dsn)
    await store.start()
    conn = await asyncpg.connect(dsn)
    try:
        for setting in settings:
            table, option = setting.split(":", 1)
            assert table in TABLES, table
            await conn.execute(f"ALTER TABLE {table} SET ({option})")
        for statement in statements:
            await conn.execute(statement)
        await lifecycle(store, batch, batch)  # prepared statements, first pages
        await conn.execute("SELECT pg_stat_force_next_flush()")
        wal0, commits0 = await conn.fetchrow(COUNTERS)
        before = {r[0]: tuple(r[1:]) for r in await conn.fetch(UPDATES, list(TABLES))}
        started = time.perf_counter()
        await lifecycle(store, jobs, batch)
        elapsed = time.perf_counter() - started
        await store.close()  # flushes the store's statistics
        await asyncio.sleep(1.1)  # backends flush table statistics at most once a second
        wal1, commits1 = await conn.fetchrow(COUNTERS)
        after = {r[0]: tuple(r[1:]) for r in await conn.fetch(UPDATES, list(TABLES))}
    finally:
        await conn.close()
        await store.close()
    out: dict[str, Any] = {
        "jobs_per_s": jobs / elapsed,
        "wal_bytes_per_job": (wal1 - wal0) / jobs,
        "commits_per_job": (commits1 - commits0) / jobs,
    }
    for table in TABLES:
        _ins, upd, hot = (a - b for a, b in zip(after[table], before[table], strict=True))
        out[f"{table}: updates per job"] = upd / jobs
        out[f"{table}: HOT share"] = hot / upd if upd else None
    return out


def run_on(admin: str, args: argparse.Namespace) -> dict[str, Any]:
    name = f"lifecycle_{uuid.uuid4().hex[:8]}"
    dsn = create_database(admin, name)
    try:
        return asyncio.run(measure(dsn, args.jobs, args.batch, args.set, args.sql))
    finally:
        drop_database(admin, name)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.drivers.lifecycle", description=__doc__)
    p.add_argument("--admin", help="an existing server's admin DSN (default: a private one)")
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--set", action="append", default=[], metavar="TABLE:OPTION=VALUE")
    p.add_argument(
        "--sql",
        action="append",
        default=[],
        metavar="STATEMENT",
        help="run after the migrations (e.g. 'DROP INDEX x': what an index costs)",
    )
    args = p.parse_args()
    if args.admin:
        result = run_on(args.admin, args)
    else:
        with bench_postgres() as pg:
            result = run_on(pg.admin_dsn, args)
    for key, value in result.items():
        print(f"{key:32} {value:,.3f}" if value is not None else f"{key:32} -")


if __name__ == "__main__":
    main()
