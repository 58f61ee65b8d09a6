"""PostgreSQL's work per job, for every target over PostgreSQL (Chronoq and the floor).

Over the measured part of a throughput run (``pg_work``, wrapped around it by the
target's ``measuring``):

* *statements per job* — ``pg_stat_statements`` calls of the run's database, summed over
  every statement (``BEGIN``/``COMMIT`` included: ``track_utility`` is on), / N;
* *buffers dirtied per job* — ``shared_blks_dirtied`` summed the same way (a buffer is
  counted when a clean page becomes dirty; dirtying it again before it is written is free);
* *buffers written per job* — the run's backends' own writes (``shared_blks_written``:
  evictions, bulk-insert rings; exact and per database) plus the checkpointer's and
  bgwriter's (``pg_stat_bgwriter``, server-wide, reported with a lag; PostgreSQL 15 has no
  ``pg_stat_io``). Most dirty pages are written by a later checkpoint, so this is small
  unless the working set outgrows ``shared_buffers`` or a checkpoint fell into the window.

WAL bytes (``pg_current_wal_lsn``) and write transactions come from the targets'
``counters()``. The bench's own queries (completion polls, timeline, these snapshots)
run as the role ``bench_observer`` and are left out of the statement figures.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from bench import api
from bench.load import close_connections, drive, open_connections
from bench.model import ScenarioRun, Settings

OBSERVER = "bench_observer"

CREATE_OBSERVER = (
    "DO $$ BEGIN CREATE ROLE bench_observer LOGIN SUPERUSER;"
    " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
)

STATEMENTS = (
    "SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(rows), 0)::bigint,"
    " coalesce(sum(shared_blks_dirtied), 0)::bigint,"
    " coalesce(sum(shared_blks_written), 0)::bigint, coalesce(sum(wal_bytes), 0)::bigint,"
    " coalesce(sum(wal_fpi), 0)::bigint, coalesce(sum(total_exec_time), 0)::float8"
    " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
    " WHERE datname = current_database())"
    " AND userid <> (SELECT oid FROM pg_roles WHERE rolname = 'bench_observer')"
)
STATEMENT_KEYS = ("calls", "rows", "dirtied", "backend_written", "wal_bytes", "wal_fpi", "exec_ms")

PER_STATEMENT = (
    "SELECT queryid, calls, total_exec_time, shared_blks_dirtied, wal_bytes, rows,"
    " left(regexp_replace(query, '\\s+', ' ', 'g'), 140)"
    " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
    " WHERE datname = current_database())"
    " AND userid <> (SELECT oid FROM pg_roles WHERE rolname = 'bench_observer')"
)
"""Per statement, for the JSON's breakdown (``pg_work_statements``): where the work went."""

BGWRITER = "SELECT buffers_checkpoint, buffers_clean FROM pg_stat_bgwriter"
"""Background writes (``buffers_backend`` is left out: the backends' own writes come from
``pg_stat_statements``, exactly and per database)."""


async def observer_pool(dsn: str, *, max_size: int = 4) -> Any:
    """The bench's own pool on ``dsn``, as ``bench_observer`` (created if missing)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(CREATE_OBSERVER)
    finally:
        await conn.close()
    return await asyncpg.create_pool(dsn, user=OBSERVER, min_size=1, max_size=max_size)


async def _snapshot(db: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    row = await db.fetchrow(BGWRITER)
    out["background_written"] = float(sum(int(v or 0) for v in row))
    try:
        row = await db.fetchrow(STATEMENTS)
    except asyncpg.UndefinedTableError:  # pg_stat_statements not loaded
        return out
    out.update({k: float(v) for k, v in zip(STATEMENT_KEYS, row, strict=True)})
    return out


_KEYS = ("calls", "exec_ms", "dirtied", "wal_bytes")


async def _per_statement(db: Any) -> dict[int, tuple[Any, ...]]:
    try:
        return {row[0]: tuple(row[1:]) for row in await db.fetch(PER_STATEMENT)}
    except asyncpg.UndefinedTableError:
        return {}


@contextlib.asynccontextmanager
async def pg_work(db: Any, run: ScenarioRun) -> AsyncIterator[None]:
    """Record the database's work over the block in ``run.raw['pg_work']`` (deltas), and
    per statement in ``run.raw['pg_work_statements']`` (the top 15 by execution time)."""
    before, statements = await _snapshot(db), await _per_statement(db)
    yield
    after, statements_after = await _snapshot(db), await _per_statement(db)
    run.raw["pg_work"] = {k: v - before[k] for k, v in after.items() if k in before}
    rows = []
    for queryid, (calls, exec_ms, dirtied, wal, nrows, query) in statements_after.items():
        old = statements.get(queryid, (0, 0.0, 0, 0, 0, query))
        if calls - old[0] > 0:
            deltas = (calls - old[0], exec_ms - old[1], dirtied - old[2], int(wal - old[3]))
            rows.append(
                {"query": query, "rows": nrows - old[4], **dict(zip(_KEYS, deltas, strict=True))}
            )
    rows.sort(key=lambda r: -r["exec_ms"])
    run.raw["pg_work_statements"] = rows[:15]


def add_work_metrics(run: ScenarioRun, jobs: int, counters: dict[str, int]) -> None:
    """WAL, transactions, statements and buffers per job (``counters``: the deltas)."""
    run.add("PostgreSQL WAL bytes per job", counters["wal_bytes"] / jobs, "B")
    run.add("PostgreSQL write transactions per job", counters["write_transactions"] / jobs, "tx")
    add_statement_metrics(run, jobs)


def add_statement_metrics(run: ScenarioRun, jobs: int) -> None:
    """Statements, buffers dirtied and written per job, from ``run.raw['pg_work']``."""
    for row in run.raw.get("pg_work_statements", []):
        row.update({f"{k}_per_job": row[k] / jobs for k in _KEYS})
    work = run.raw.get("pg_work", {})
    calls = work.get("calls")
    run.add("PostgreSQL statements per job", calls / jobs if calls is not None else None, "stmt")
    dirtied = work.get("dirtied")
    run.add(
        "PostgreSQL buffers dirtied per job", dirtied / jobs if dirtied is not None else None, "buf"
    )
    written = None
    if "backend_written" in work:
        written = work["backend_written"] + work.get("background_written", 0.0)
    run.add(
        "PostgreSQL buffers written per job", written / jobs if written is not None else None, "buf"
    )


def counter_deltas(pair: tuple[dict[str, int], dict[str, int]]) -> dict[str, int]:
    """``PG_COUNTERS`` before/after as deltas; ``txid_current()`` itself takes one id."""
    before, after = pair
    delta = {k: after[k] - before[k] for k in before}
    delta["write_transactions"] = delta.pop("txid") - 1
    return delta


def add_cpu_metrics(
    run: ScenarioRun, jobs: int, cpu: dict[str, Any], parts: tuple[str, ...]
) -> None:
    """CPU per job and cores of each part (``postgres`` included), as the cluster reports."""
    cpu_s, cores = cpu["cpu_s"], cpu["cores"]
    for part in parts:
        run.add(f"CPU per job: {part}", cpu_s.get(part, 0.0) / jobs * 1000, "ms")
    run.add("CPU per job: all + PostgreSQL", sum(cpu_s.values()) / jobs * 1000, "ms")
    run.add("CPU per job: load generator", cpu["client_cpu_s"] / jobs * 1000, "ms")
    for part in parts:
        run.add(f"cores: {part}", cores.get(part), "cores")
    run.add("cores: load generator", cpu["client_cores"], "cores")
    run.add("machine busy (avg cores)", cpu["machine_busy_cores"], "cores")
    run.add("other processes (avg cores)", cpu["other_cores"], "cores")


async def warm_up(target: Any, db: Any, settings: Settings, analyze: str) -> dict[str, Any]:
    """``warmup_jobs`` no-op jobs through the target's bulk path, then ``analyze`` (the same
    warm-up as the distributed profile's, for any target with a ``db`` pool)."""
    if settings.warmup_jobs <= 0:
        return {"jobs": 0}
    started = time.perf_counter()
    baseline = await target.completed()
    host = f"{target.host}:{target.api_ports[0]}"
    requests = api.batch_requests(host, "bench-warmup", settings.warmup_jobs, settings.batch_size)
    conns = await open_connections(target.host, target.api_ports, settings.batch_clients)
    try:
        load = await drive(conns, requests, expect=201)
    finally:
        await close_connections(conns)
    if load.first_error:
        raise RuntimeError(f"warm-up failed: {load.first_error}")
    await target.wait_completed(
        baseline + settings.warmup_jobs, "bench-warmup",
        deadline=time.perf_counter() + settings.timeout_s, interval_s=settings.poll_interval_s,
    )  # fmt: skip
    await db.execute(analyze)
    return {"jobs": settings.warmup_jobs, "seconds": time.perf_counter() - started}
