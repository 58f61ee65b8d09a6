"""How long the first page of ``list_jobs`` takes with each filter, at 100,000 jobs of one
user (plus 50,000 of others, interleaved, and 120,000 runs), on SQLite and PostgreSQL.

A measuring script, not a test (nothing here asserts a time; docs/api.md quotes its
figures): ``PYTHONPATH=src python -m tests.contract.list_timing [sqlite|postgres ...]``.
Each figure is the median of 7 calls of the store's ``list_jobs`` (limit 25, with the 10
newest runs per job, as the API asks), after one warm-up call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from chronoq.adapters.postgres import PostgresStore
from chronoq.adapters.sqlite import SqliteStore
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Job
from chronoq.domain.states import JobStatus
from chronoq.ports.jobs import JobKind, ListJobsParams
from chronoq.ports.store import Store
from tests.support.postgres import create_database, drop_database

from .helpers import T0, make_job

ADMIN_DSN = os.environ.get(
    "CHRONOQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
USER = "heavy"
JOBS = 100_000
OTHERS = 50_000
RUNS_EVERY = 10  # every 10th job of the user has 12 runs
RUNS_EACH = 12


def _jobs(rng: random.Random) -> list[Job]:
    jobs: list[Job] = []
    for i in range(JOBS + OTHERS):
        user = f"other-{i % 7}" if i % 3 == 2 else USER  # 2 of 3: 100,000 and 50,000
        roll = rng.random()
        status = (
            JobStatus.FAILED if roll < 0.001
            else JobStatus.COMPLETED if roll < 0.25
            else JobStatus.PAUSED if roll < 0.27
            else JobStatus.PENDING
        )  # fmt: skip
        recurring = rng.random() < 0.4
        job = make_job(
            user_id=user,
            project_id=f"proj-{rng.randrange(50):02d}",
            status=status,
            cron="*/5 * * * *" if recurring else None,
            next_fire_at=None if status is not JobStatus.PENDING else T0,
        )
        jobs.append(dataclasses.replace(job, job_id=new_id()))
    return jobs


CASES: dict[str, dict[str, object]] = {
    "no filter": {},
    "status=PENDING (common)": {"statuses": frozenset({JobStatus.PENDING})},
    "status=FAILED (0.1%)": {"statuses": frozenset({JobStatus.FAILED})},
    "status=FAILED,PAUSED": {"statuses": frozenset({JobStatus.FAILED, JobStatus.PAUSED})},
    "project_id=proj-07": {"project_id": "proj-07"},
    "kind=recurring": {"kind": JobKind.RECURRING},
    "q=project substring 'oj-4'": {"search": "oj-4"},
    "q=full job id": {"search": "<id>"},
    "q=no match (worst case)": {"search": "zzz-none"},
    "status=FAILED + kind + q": {
        "statuses": frozenset({JobStatus.FAILED}),
        "kind": JobKind.ONCE,
        "search": "proj-1",
    },
}


async def _fill(store: Store, jobs: list[Job], add_runs: object) -> None:
    for start in range(0, len(jobs), 2000):
        await store.insert_jobs(jobs[start : start + 2000])
    mine = [j for j in jobs if j.user_id == USER][::RUNS_EVERY]
    await add_runs(mine)  # type: ignore[operator]


async def _measure(store: Store, jobs: list[Job]) -> dict[str, float]:
    mine = [j for j in jobs if j.user_id == USER]
    results: dict[str, float] = {}
    for name, filters in CASES.items():
        if filters.get("search") == "<id>":
            filters = {"search": mine[len(mine) // 2].job_id}
        params = ListJobsParams(user_id=USER, limit=25, recent_runs=10, **filters)  # type: ignore[arg-type]
        await store.list_jobs(params)
        times = []
        for _ in range(7):
            began = time.perf_counter()
            page = await store.list_jobs(params)
            times.append((time.perf_counter() - began) * 1000)
        results[f"{name} ({len(page.items)} rows)"] = statistics.median(times)
    return results


def _run_rows(jobs: list[Job]) -> list[tuple[str, str, str, int, int, str]]:
    rows = []
    for job in jobs:
        for n in range(RUNS_EACH):
            status = "COMPLETED" if n % 4 else "FAILED"
            rows.append((str(uuid.uuid4()), job.job_id, job.user_id, n, 1, status))
    return rows


async def sqlite_case(jobs: list[Job]) -> dict[str, float]:
    import sqlite3

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "timing.db"
        store = SqliteStore(path, synchronous="OFF")
        await store.start()

        async def add_runs(of: list[Job]) -> None:
            with sqlite3.connect(path) as conn:
                conn.executemany(
                    "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt,"
                    " status, triggered_at, available_at) VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                    [(r, j, u, n * 60_000_000, a, s) for r, j, u, n, a, s in _run_rows(of)],
                )

        try:
            await _fill(store, jobs, add_runs)
            return await _measure(store, jobs)
        finally:
            await store.close()


async def postgres_case(jobs: list[Job]) -> dict[str, float]:
    import asyncpg

    name = f"chronoq_list_timing_{uuid.uuid4().hex[:8]}"
    dsn = create_database(ADMIN_DSN, name)
    store = PostgresStore(dsn)
    try:
        await store.start()

        async def add_runs(of: list[Job]) -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.executemany(
                    "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt,"
                    " status, triggered_at, available_at) VALUES ($1, $2, $3,"
                    " $4::timestamptz + make_interval(mins => $5::int), $6, $7, $4, $4)",
                    [(r, j, u, T0, n, a, s) for r, j, u, n, a, s in _run_rows(of)],
                )
                await conn.execute("ANALYZE")
            finally:
                await conn.close()

        await _fill(store, jobs, add_runs)
        return await _measure(store, jobs)
    finally:
        await store.close()
        drop_database(ADMIN_DSN, name)


async def main(engines: list[str]) -> None:
    jobs = _jobs(random.Random(10))
    mine = sum(j.user_id == USER for j in jobs)
    print(f"{mine} jobs of {USER!r}, {len(jobs) - mine} of others")
    for engine in engines:
        case = sqlite_case if engine == "sqlite" else postgres_case
        began = time.perf_counter()
        results = await case(jobs)
        print(f"\n{engine} (filled and measured in {time.perf_counter() - began:.0f} s):")
        for name, ms in results.items():
            print(f"  {name:48} {ms:7.1f} ms")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["sqlite", "postgres"]))
