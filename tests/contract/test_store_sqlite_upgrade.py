"""SQLite only: a database written under older migrations opens with the new store.

Not a contract of every adapter (the others have their own migration tests): it shows
that an embedded node upgraded in place keeps its jobs and treats a run that was in
flight under the old schema (``started_at`` set at claim time) as started — the safe
reading, since it may have executed.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from chronoq.adapters.sqlite import SqliteStore
from chronoq.adapters.sqlite.dispatch import _CLAIM_ALL, _candidates
from chronoq.adapters.sqlite.migrations import migrate
from chronoq.domain.clock import to_micros
from chronoq.domain.jobs import ClaimedRun, Job
from chronoq.domain.policies import Policies, SkipReason
from chronoq.domain.queues import ClaimLimits, Slots
from chronoq.domain.states import LOST_TO_LEASE, RUN_TERMINAL, JobStatus, RunStatus
from chronoq.ports.dispatch import ClaimRunsParams

from .helpers import (
    T0,
    at,
    claim_due,
    claim_runs,
    fires_of,
    job_now,
    make_job,
    outcome,
    output_of,
    reap,
    runs_of,
)


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


def _database_at_005(path: Path, recurring: Job, one_shot: Job) -> None:
    """Migrations 001-005 only: a recurring job due at T0, and a one-shot job whose run is
    RUNNING and started (in flight when the node stopped for the upgrade)."""
    folder = resources.files("chronoq.adapters.sqlite") / "sql"
    t0 = to_micros(T0)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at)")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            version = int(entry.name.split("_", 1)[0])
            if entry.name.endswith(".sql") and version <= 5:
                conn.executescript(entry.read_text())
                conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        for job, status, next_fire in (
            (recurring, "PENDING", t0),
            (one_shot, "RUNNING", None),
        ):
            conn.execute(
                "INSERT INTO jobs (job_id, user_id, project_id, payload, payload_size,"
                " cron_schedule, next_fire_at, shard_id, status, max_retries, created_at,"
                " updated_at) VALUES (?, ?, 'default', 'echo hi', 7, ?, ?, 0, ?, 0, ?, ?)",
                (job.job_id, job.user_id, job.cron_schedule, next_fire, status, t0, t0),
            )
        conn.execute(
            "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
            " triggered_at, available_at, started_at, worker_id, lease_owner, lease_until)"
            " VALUES ('in-flight', ?, ?, ?, 1, 'RUNNING', ?, ?, ?, 'w1', 'w1', ?)",
            (one_shot.job_id, one_shot.user_id, t0, t0, t0, t0, to_micros(at(30))),
        )
    conn.close()


async def test_a_database_at_005_upgrades_to_006_with_default_policies(tmp_path: Path) -> None:
    recurring = make_job(cron="@every 10s")
    one_shot = make_job(status=JobStatus.RUNNING, next_fire_at=None)
    path = tmp_path / "at005.sqlite"
    _database_at_005(path, recurring, one_shot)
    store = SqliteStore(path)
    await store.start()
    try:
        for job in (recurring, one_shot):
            upgraded = await job_now(store, job)
            assert upgraded.policies == Policies()  # overlap skip, run_once, no bounds
            assert (upgraded.fire_count, upgraded.paused_fire_at) == (0, None)
            assert (upgraded.idempotency_key, upgraded.request_hash) == (None, None)
        (old,) = await runs_of(store, one_shot)
        assert (old.run_id, old.manual, old.started_at) == ("in-flight", False, T0)

        # The in-flight run finishes under the new schema; its job settles as before.
        done = outcome(
            ClaimedRun(
                run_id="in-flight", job_id=one_shot.job_id, attempt=1, scheduled_for=T0,
                available_at=T0, payload="echo hi", payload_ref=None, timeout_seconds=None,
                max_retries=0, recurring=False,
            ),
            RunStatus.COMPLETED,
        )  # fmt: skip
        assert await store.complete_runs([done]) == [True]
        assert (await job_now(store, one_shot)).status is JobStatus.COMPLETED

        # The recurring job fires by its (default) policies: one run, counted, next fire on.
        (run,) = await claim_due(store, T0)
        assert (run.job_id, run.scheduled_for, run.manual) == (recurring.job_id, T0, False)
        after = await job_now(store, recurring)
        assert (after.fire_count, after.next_fire_at) == (1, at(10))
        (claimed,) = await claim_runs(store, "w1", T0)
        assert await store.mark_started("w1", [claimed.run_id], T0) == [claimed.run_id]
        # Overlap skip is the default: a fire while that run goes on is skipped, recorded.
        assert len(await claim_due(store, at(10))) == 1
        (claimed2,) = await claim_runs(store, "w2", at(10))
        assert await store.mark_started("w2", [claimed2.run_id], at(10)) == []
        fires = await fires_of(store, recurring)
        assert [(f.scheduled_for, f.outcome, f.reason) for f in fires] == [
            (T0, "RUNNING", None),
            (at(10), "SKIPPED", SkipReason.OVERLAP),
        ]
        assert await store.skip_counts() == {SkipReason.OVERLAP: 1}
        assert await store.pause_job(recurring.user_id, recurring.job_id, at(11)) is not None
        assert (await job_now(store, recurring)).paused_fire_at == at(20)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    conn.close()
    assert versions == _packaged_versions()  # 006 and every later migration applied


def test_the_terminal_index_is_rewritten_without_an_in_list(tmp_path: Path) -> None:
    """010: the same unique rule, its predicate as ORs (an IN list cost 10 us per write)."""
    path = tmp_path / "chronoq.db"
    conn = sqlite3.connect(path)
    try:
        migrate(conn)
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'runs_one_terminal_per_fire'"
        ).fetchone()
    finally:
        conn.close()
    assert " IN " not in sql.upper()
    for status in RUN_TERMINAL:
        assert f"status = '{status.value}'" in sql


async def test_a_database_at_006_upgrades_to_007_with_every_run_in_the_default_queue(
    tmp_path: Path,
) -> None:
    """Jobs and runs written before migration 007 are in queue ``default`` at priority 0:
    a worker of that queue claims the QUEUED run, and a queue limit counts the RUNNING
    one; the claims read the new indexes."""
    queued = make_job(next_fire_at=None)
    running = make_job(status=JobStatus.RUNNING, next_fire_at=None)
    path = tmp_path / "at006.sqlite"
    _database_at_005(path, make_job(cron="@every 10s"), running)
    folder = resources.files("chronoq.adapters.sqlite") / "sql"
    t0 = to_micros(T0)
    with sqlite3.connect(path) as conn:
        sixth = next(e for e in folder.iterdir() if e.name.startswith("006_"))
        conn.executescript(sixth.read_text())
        conn.execute("INSERT INTO schema_migrations VALUES (6, 0)")
        conn.execute(
            "INSERT INTO jobs (job_id, user_id, project_id, payload, payload_size, shard_id,"
            " status, max_retries, created_at, updated_at)"
            " VALUES (?, ?, 'default', 'echo hi', 7, 0, 'PENDING', 0, ?, ?)",
            (queued.job_id, queued.user_id, t0, t0),
        )
        conn.execute(
            "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
            " triggered_at, available_at) VALUES ('waiting', ?, ?, ?, 1, 'QUEUED', ?, ?)",
            (queued.job_id, queued.user_id, t0, t0, t0),
        )
    conn.close()
    store = SqliteStore(path)
    await store.start()
    try:
        for job in (queued, running):
            upgraded = await job_now(store, job)
            assert (upgraded.queue, upgraded.priority) == ("default", 0)
            (run,) = await runs_of(store, job)
            assert (run.queue, run.priority) == ("default", 0)

        def params(limit: int) -> ClaimRunsParams:
            return ClaimRunsParams(
                worker_id="w2", now=at(1), horizon=at(1), lease_until=at(31),
                queues=frozenset({"default"}), limits=ClaimLimits(per_queue={"default": limit}),
            )  # fmt: skip

        assert await store.claim_runs(params(1)) == []  # the in-flight run fills the queue
        (claimed,) = await store.claim_runs(params(2))
        assert claimed.run_id == "waiting"
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        plans = {
            name: " ".join(str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
            for name, sql, args in (
                ("all", _CLAIM_ALL, (0, 10)),
                ("one", *_candidates(params(5), Slots(ClaimLimits(), []), 10)),
            )
        }
    conn.close()
    assert "runs_queued_priority" in plans["all"] and "TEMP B-TREE" not in plans["all"], plans
    assert "runs_queued_queue" in plans["one"] and "TEMP B-TREE" not in plans["one"], plans


def test_the_limit_counts_read_their_partial_indexes(tmp_path: Path) -> None:
    """008/011: the per-user counts make their partial indexes when first used and are
    index ranges, and no index predicate on a hot column is an IN list (SQLite rebuilds
    one on every write of the column; see 010)."""
    from chronoq.adapters.sqlite import limits

    conn = sqlite3.connect(tmp_path / "chronoq.db")
    try:
        migrate(conn)
        made = (
            "SELECT name FROM sqlite_master WHERE name IN ('jobs_user_active', 'runs_user_fired')"
        )
        assert conn.execute(made).fetchall() == []  # 011: only where a limit is used
        assert limits.active_jobs(conn, "alice") == 0  # a count makes its index first
        assert limits.fires_in_window(conn, ["alice"], datetime.now(UTC)) == {}
        assert sorted(r[0] for r in conn.execute(made)) == ["jobs_user_active", "runs_user_fired"]
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM jobs WHERE user_id = ? AND " + limits._ACTIVE,
            ("alice",),
        ).fetchall()
        predicates = [
            sql for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index'")
            if sql is not None and " WHERE " in sql
        ]  # fmt: skip
    finally:
        conn.close()
    assert "jobs_user_active" in str(plan), plan
    assert predicates and not [p for p in predicates if " IN (" in p.upper()], predicates


def _packaged_versions() -> list[int]:
    folder = resources.files("chronoq.adapters.sqlite") / "sql"
    return sorted(int(e.name.split("_", 1)[0]) for e in folder.iterdir() if e.name.endswith(".sql"))


async def test_temporary_files_stay_in_memory(tmp_path: Path) -> None:
    """Statement journals and temporary b-trees are kept in memory: on disk they were
    80% of the bytes the embedded server wrote per job, all thrown away."""
    store = SqliteStore(tmp_path / "chronoq.db")
    await store.start()
    try:
        mode = await store._run(lambda c: c.execute("PRAGMA temp_store").fetchone()[0])
    finally:
        await store.close()
    assert mode == 2  # MEMORY
