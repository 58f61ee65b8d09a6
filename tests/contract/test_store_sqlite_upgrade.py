"""SQLite only: a database written before migration 002 opens with the new store.

Not a contract of every adapter (the others have their own migration tests): it shows
that an embedded node upgraded in place keeps its jobs and treats a run that was in
flight under the old schema (``started_at`` set at claim time) as started — the safe
reading, since it may have executed.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from chronoq.adapters.sqlite import SqliteStore
from chronoq.domain.clock import to_micros
from chronoq.domain.states import LOST_TO_LEASE, JobStatus, RunStatus

from .helpers import T0, at, job_now, make_job, output_of, reap, runs_of


def _old_database(path: Path, job_id: str, user_id: str) -> None:
    """Schema 001 only, holding one RUNNING run leased (and, then, started) at claim."""
    first = resources.files("chronoq.adapters.sqlite") / "sql" / "001_initial.sql"
    t0 = to_micros(T0)
    with sqlite3.connect(path) as conn:
        conn.executescript(first.read_text())
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at)")
        conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        conn.execute(
            "INSERT INTO jobs (job_id, user_id, project_id, payload, payload_size, shard_id,"
            " status, max_retries, created_at, updated_at)"
            " VALUES (?, ?, 'default', 'echo hi', 7, 0, 'RUNNING', 0, ?, ?)",
            (job_id, user_id, t0, t0),
        )
        conn.execute(
            "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
            " triggered_at, available_at, started_at, worker_id, lease_owner, lease_until)"
            " VALUES ('old-run', ?, ?, ?, 1, 'RUNNING', ?, ?, ?, 'w1', 'w1', ?)",
            (job_id, user_id, t0, t0, t0, t0, to_micros(at(30))),
        )
    conn.close()


async def test_an_old_database_migrates_and_its_in_flight_run_counts_as_started(
    tmp_path: Path,
) -> None:
    job = make_job(status=JobStatus.RUNNING, next_fire_at=None)
    path = tmp_path / "old.sqlite"
    _old_database(path, job.job_id, job.user_id)
    store = SqliteStore(path)
    await store.start()
    try:
        (run,) = await runs_of(store, job)
        assert (run.run_id, run.status, run.interruptions) == ("old-run", RunStatus.RUNNING, 0)

        assert await reap(store, at(31), retry_at=at(32)) == 1

        old, new = await runs_of(store, job)
        assert (old.status, old.error_message) == (RunStatus.INTERRUPTED, LOST_TO_LEASE)
        assert (new.attempt, new.interruptions, new.available_at) == (2, 1, at(32))
        assert (await job_now(store, job)).status is JobStatus.PENDING
        assert await store.fence_shards(1, {0: "p1"})  # the fencing tables exist
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    conn.close()
    assert versions[:2] == [1, 2]  # 002 applied on top of 001


async def test_long_outputs_written_before_migration_003_are_read_whole(tmp_path: Path) -> None:
    job = make_job(status=JobStatus.COMPLETED, next_fire_at=None)
    path = tmp_path / "old.sqlite"
    _old_database(path, job.job_id, job.user_id)
    long, short = "é" * 5000 + "end", "fits"
    with sqlite3.connect(path) as conn:  # runs finished under schema 001: outputs inline
        conn.execute(
            "UPDATE job_runs SET status = 'COMPLETED', output = ?, lease_owner = NULL",
            (long,),
        )
        conn.execute(
            "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
            " triggered_at, available_at, output) VALUES ('short-run', ?, ?, ?, 2,"
            " 'FAILED', ?, ?, ?)",
            (job.job_id, job.user_id, to_micros(at(1)), to_micros(T0), to_micros(T0), short),
        )
    conn.close()
    store = SqliteStore(path)
    await store.start()
    try:
        listed = {run.run_id: run for run in await runs_of(store, job)}
        assert listed["old-run"].output_truncated and len(listed["old-run"].output or "") == 2048
        assert not listed["short-run"].output_truncated
        assert await output_of(store, job, "old-run") == long
        assert await output_of(store, job, "short-run") == short
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:  # the row keeps only the head; the whole is aside
        (head,) = conn.execute("SELECT length(output) FROM job_runs WHERE run_id = 'old-run'")
        assert head == (2049,)
    conn.close()
