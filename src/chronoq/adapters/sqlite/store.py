"""``SqliteStore``: the Store port over SQLite (WAL), for the embedded mode.

All operations run on one writer thread (``SqliteThread``) that group-commits;
the functions below are the transactions, each a plain function of the
connection. Compare-and-set writes check (status, lease owner, attempt).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from chronoq.adapters.sqlite.rows import (
    JOB_COLUMNS,
    RUN_COLUMNS,
    claimed_from_row,
    job_from_row,
    run_from_row,
)
from chronoq.adapters.sqlite.thread import SqliteThread
from chronoq.domain.clock import from_micros, to_micros
from chronoq.domain.fires import next_fire
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import ClaimedRun, Job, Run, RunOutcome
from chronoq.domain.retry import attempts_left_after_lost_lease
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus, job_status_after_run
from chronoq.errors import ConflictError, ValidationError
from chronoq.ports.store import (
    Backlog,
    CancelResult,
    ClaimDueParams,
    ClaimRunsParams,
    JobPage,
    ListJobsParams,
    ReapParams,
)

_LEASE_LOST = "lease expired: the worker stopped heartbeating"


class SqliteStore:
    """The embedded Store. ``path`` is the database file (created if missing)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self._thread = SqliteThread(path, synchronous=synchronous)
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        self._thread.start()
        self._started = True
        await self._thread.run(_migrate)

    async def close(self) -> None:
        if self._started:
            self._started = False
            self._thread.stop()

    async def insert_jobs(self, jobs: Sequence[Job]) -> None:
        rows = [_job_row(job) for job in jobs]

        def op(conn: sqlite3.Connection) -> None:
            try:
                conn.executemany(_INSERT_JOB, rows)
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"a job with that id already exists: {exc}") from None

        await self._thread.run(op)

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        def op(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ? AND user_id = ?",
                (job_id, user_id),
            ).fetchone()
            return None if row is None else job_from_row(row)

        return await self._thread.run(op)

    async def list_jobs(self, params: ListJobsParams) -> JobPage:
        after = _decode_cursor(params.cursor)

        def op(conn: sqlite3.Connection) -> JobPage:
            sql = f"SELECT seq, {JOB_COLUMNS} FROM jobs WHERE user_id = ? AND seq > ?"
            args: list[Any] = [params.user_id, after]
            if params.status is not None:
                sql += " AND status = ?"
                args.append(params.status.value)
            if params.project_id is not None:
                sql += " AND project_id = ?"
                args.append(params.project_id)
            sql += " ORDER BY seq LIMIT ?"
            args.append(params.limit + 1)
            rows = conn.execute(sql, args).fetchall()
            more = len(rows) > params.limit
            rows = rows[: params.limit]
            cursor = str(rows[-1][0]) if more and rows else None
            return JobPage(items=[job_from_row(r[1:]) for r in rows], next_cursor=cursor)

        return await self._thread.run(op)

    async def list_runs(self, user_id: str, job_id: str, limit: int = 100) -> list[Run]:
        def op(conn: sqlite3.Connection) -> list[Run]:
            rows = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM job_runs WHERE job_id = ? AND user_id = ?"
                " ORDER BY scheduled_for DESC, attempt DESC LIMIT ?",
                (job_id, user_id, limit),
            ).fetchall()
            return [run_from_row(r) for r in rows]

        return await self._thread.run(op)

    async def cancel_job(self, user_id: str, job_id: str, now: datetime) -> CancelResult | None:
        return await self._thread.run(lambda c: _cancel(c, user_id, job_id, to_micros(now)))

    async def claim_due(self, params: ClaimDueParams) -> list[Run]:
        return await self._thread.run(lambda c: _claim_due(c, params))

    async def next_due_at(self, shards: Sequence[int] | None) -> datetime | None:
        def op(conn: sqlite3.Connection) -> int | None:
            if shards is None:
                sql = "SELECT min(next_fire_at) FROM jobs WHERE next_fire_at IS NOT NULL"
                return conn.execute(sql).fetchone()[0]  # type: ignore[no-any-return]
            marks = ",".join("?" * len(shards))
            sql = f"SELECT min(next_fire_at) FROM jobs WHERE shard_id IN ({marks})"
            return conn.execute(sql, list(shards)).fetchone()[0]  # type: ignore[no-any-return]

        value = await self._thread.run(op)
        return None if value is None else from_micros(value)

    async def claim_runs(self, params: ClaimRunsParams) -> list[ClaimedRun]:
        return await self._thread.run(lambda c: _claim_runs(c, params))

    async def next_available_at(self) -> datetime | None:
        sql = "SELECT min(available_at) FROM job_runs WHERE status = 'QUEUED'"
        value = await self._thread.run(lambda c: c.execute(sql).fetchone()[0])
        return None if value is None else from_micros(value)

    async def complete_runs(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        return await self._thread.run(lambda c: [_complete(c, o) for o in outcomes])

    async def extend_leases(
        self, worker_id: str, run_ids: Sequence[str], lease_until: datetime
    ) -> list[str]:
        until = to_micros(lease_until)

        def op(conn: sqlite3.Connection) -> list[str]:
            held = []
            for run_id in run_ids:
                cur = conn.execute(
                    "UPDATE job_runs SET lease_until = ? WHERE run_id = ? AND lease_owner = ?"
                    " AND status = 'RUNNING'",
                    (until, run_id, worker_id),
                )
                if cur.rowcount == 1:
                    held.append(run_id)
            return held

        return await self._thread.run(op)

    async def release_runs(self, worker_id: str, run_ids: Sequence[str]) -> int:
        def op(conn: sqlite3.Connection) -> int:
            released = 0
            for run_id in run_ids:
                row = conn.execute(
                    "UPDATE job_runs SET status = 'QUEUED', lease_owner = NULL, lease_until = NULL,"
                    " worker_id = NULL, started_at = NULL WHERE run_id = ? AND lease_owner = ?"
                    " AND status = 'RUNNING' RETURNING job_id",
                    (run_id, worker_id),
                ).fetchone()
                if row is not None:
                    released += 1
                    conn.execute(
                        "UPDATE jobs SET status = 'PENDING'"
                        " WHERE job_id = ? AND status = 'RUNNING'",
                        (row[0],),
                    )
            return released

        return await self._thread.run(op)

    async def backlog(self, now: datetime) -> Backlog:
        now_us = to_micros(now)

        def op(conn: sqlite3.Connection) -> Backlog:
            due, oldest = conn.execute(
                "SELECT count(*), min(next_fire_at) FROM jobs"
                " WHERE next_fire_at IS NOT NULL AND next_fire_at <= ?",
                (now_us,),
            ).fetchone()
            queued = conn.execute(
                "SELECT count(*) FROM job_runs WHERE status = 'QUEUED' AND available_at <= ?",
                (now_us,),
            ).fetchone()[0]
            running = conn.execute(
                "SELECT count(*) FROM job_runs WHERE status = 'RUNNING'"
            ).fetchone()[0]
            return Backlog(
                due=due,
                oldest_due=None if oldest is None else from_micros(oldest),
                queued=queued,
                running=running,
            )

        return await self._thread.run(op)

    async def purge_finished(self, before: datetime, limit: int = 1000) -> list[str]:
        cutoff = to_micros(before)

        def op(conn: sqlite3.Connection) -> list[str]:
            conn.execute(_PURGE_RUNS, (cutoff, limit))
            rows = conn.execute(_PURGE_JOBS, (cutoff, limit)).fetchall()
            return [r[0] for r in rows if r[0] is not None]

        return await self._thread.run(op)

    async def reap_expired(self, params: ReapParams) -> int:
        return await self._thread.run(lambda c: _reap(c, params))


# -- transactions (run on the store thread) ---------------------------------------------------

_INSERT_JOB = (
    "INSERT INTO jobs (job_id, user_id, project_id, payload, payload_ref, payload_size,"
    " cron_schedule, timezone, next_fire_at, shard_id, status, max_retries, timeout_seconds,"
    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_RUN = (
    "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status, triggered_at,"
    " available_at) VALUES (?, ?, ?, ?, ?, 'QUEUED', ?, ?)"
)


_PURGE_RUNS = (
    "DELETE FROM job_runs WHERE run_id IN (SELECT run_id FROM job_runs"
    " WHERE status NOT IN ('QUEUED', 'RUNNING') AND completed_at < ? LIMIT ?)"
)
_PURGE_JOBS = (
    "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs j"
    " WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND updated_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = j.job_id) LIMIT ?)"
    " RETURNING payload_ref"
)


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    folder = resources.files("chronoq.adapters.sqlite") / "sql"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        version = int(entry.name.split("_", 1)[0])
        if version in applied:
            continue
        for statement in entry.read_text().split(";"):
            if statement.strip() and not _only_comments(statement):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s'))",
            (version,),
        )


def _only_comments(statement: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in statement.splitlines())


def _job_row(job: Job) -> tuple[Any, ...]:
    return (
        job.job_id,
        job.user_id,
        job.project_id,
        job.payload,
        job.payload_ref,
        job.payload_size,
        job.cron_schedule,
        job.timezone,
        None if job.next_fire_at is None else to_micros(job.next_fire_at),
        job.shard_id,
        job.status.value,
        job.max_retries,
        job.timeout_seconds,
        to_micros(job.created_at),
        to_micros(job.updated_at),
    )


def _decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise ValidationError(f"invalid cursor {cursor!r}", field="cursor")
    return int(cursor)


def _claim_due(conn: sqlite3.Connection, params: ClaimDueParams) -> list[Run]:
    now_us, horizon = to_micros(params.now), to_micros(params.horizon)
    sql = (
        "SELECT job_id, user_id, cron_schedule, timezone, next_fire_at FROM jobs"
        " WHERE next_fire_at IS NOT NULL AND next_fire_at <= ?"
    )
    args: list[Any] = [horizon]
    if params.shards is not None:
        sql += f" AND shard_id IN ({','.join('?' * len(params.shards))})"
        args.extend(params.shards)
    sql += " ORDER BY next_fire_at LIMIT ?"
    args.append(params.limit)
    runs: list[Run] = []
    new_runs: list[tuple[Any, ...]] = []
    advances: list[tuple[Any, ...]] = []
    for job_id, user_id, cron, tz, due in conn.execute(sql, args).fetchall():
        run_id = new_id()
        scheduled = from_micros(due)
        following = next_fire(
            cron_schedule=cron, timezone=tz, scheduled_for=scheduled, now=params.now
        )
        following_us = None if following is None else to_micros(following)
        new_runs.append((run_id, job_id, user_id, due, 1, now_us, due))
        advances.append((following_us, now_us, job_id, due))
        runs.append(
            Run(
                run_id=run_id,
                job_id=job_id,
                user_id=user_id,
                scheduled_for=scheduled,
                attempt=1,
                status=RunStatus.QUEUED,
                triggered_at=params.now,
                available_at=scheduled,
            )
        )
    conn.executemany(_INSERT_RUN, new_runs)
    conn.executemany(
        "UPDATE jobs SET next_fire_at = ?, updated_at = ? WHERE job_id = ? AND next_fire_at = ?",
        advances,
    )
    return runs


def _claim_runs(conn: sqlite3.Connection, params: ClaimRunsParams) -> list[ClaimedRun]:
    now_us = to_micros(params.now)
    rows = conn.execute(
        "SELECT r.run_id, r.job_id, r.attempt, r.scheduled_for, r.available_at, j.payload,"
        " j.payload_ref, j.timeout_seconds, j.max_retries, j.cron_schedule"
        " FROM job_runs r JOIN jobs j ON j.job_id = r.job_id"
        " WHERE r.status = 'QUEUED' AND r.available_at <= ? ORDER BY r.available_at LIMIT ?",
        (to_micros(params.horizon), params.limit),
    ).fetchall()
    if not rows:
        return []
    until = to_micros(params.lease_until)
    worker = params.worker_id
    conn.executemany(
        "UPDATE job_runs SET status = 'RUNNING', lease_owner = ?, worker_id = ?, lease_until = ?,"
        " started_at = max(available_at, ?) WHERE run_id = ? AND status = 'QUEUED'",
        [(worker, worker, until, now_us, r[0]) for r in rows],
    )
    conn.executemany(
        "UPDATE jobs SET status = 'RUNNING', updated_at = ?"
        " WHERE job_id = ? AND status = 'PENDING'",
        [(now_us, r[1]) for r in rows],
    )
    return [claimed_from_row(r) for r in rows]


def _complete(conn: sqlite3.Connection, outcome: RunOutcome) -> bool:
    status = outcome.status
    if status is RunStatus.RETRY_SCHEDULED and _job_cancelled(conn, outcome.run_id):
        status = RunStatus.CANCELLED  # no retry for a cancelled job
    completed_us = to_micros(outcome.completed_at)
    row = conn.execute(
        "UPDATE job_runs SET status = ?, started_at = ?, completed_at = ?, output = ?,"
        " exit_code = ?, error_message = ?, lease_owner = NULL, lease_until = NULL"
        " WHERE run_id = ? AND status = 'RUNNING' AND lease_owner = ? AND attempt = ?"
        " RETURNING job_id, user_id, scheduled_for",
        (
            status.value,
            to_micros(outcome.started_at),
            completed_us,
            outcome.output,
            outcome.exit_code,
            outcome.error_message,
            outcome.run_id,
            outcome.worker_id,
            outcome.attempt,
        ),
    ).fetchone()
    if row is None:
        return False  # stale: the lease moved on; nothing changed
    job_id, user_id, scheduled_for = row
    if status is RunStatus.RETRY_SCHEDULED:
        retry_at = to_micros(outcome.retry_at or outcome.completed_at)
        conn.execute(
            _INSERT_RUN,
            (new_id(), job_id, user_id, scheduled_for, outcome.attempt + 1, completed_us, retry_at),
        )
    _settle_job(conn, job_id, status, completed_us)
    return True


def _job_cancelled(conn: sqlite3.Connection, run_id: str) -> bool:
    row = conn.execute(
        "SELECT j.status FROM job_runs r JOIN jobs j ON j.job_id = r.job_id WHERE r.run_id = ?",
        (run_id,),
    ).fetchone()
    return row is not None and row[0] == JobStatus.CANCELLED


_SETTLE_JOB = (
    "UPDATE jobs SET status = CASE WHEN cron_schedule IS NULL THEN ? ELSE ? END, updated_at = ?"
    " WHERE job_id = ? AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"
)


def _settle_job(conn: sqlite3.Connection, job_id: str, status: RunStatus, now_us: int) -> None:
    """Move the job on after one of its runs reached ``status`` (terminal jobs stay put)."""
    one_shot = job_status_after_run(status, recurring=False).value
    recurring = job_status_after_run(status, recurring=True).value
    conn.execute(_SETTLE_JOB, (one_shot, recurring, now_us, job_id))


def _reap(conn: sqlite3.Connection, params: ReapParams) -> int:
    sql = (
        "SELECT r.run_id, r.job_id, r.user_id, r.scheduled_for, r.attempt, j.max_retries,"
        " j.status FROM job_runs r JOIN jobs j ON j.job_id = r.job_id WHERE r.status = 'RUNNING'"
    )
    args: list[Any] = []
    if not params.expire_all:
        sql += " AND r.lease_until < ?"
        args.append(to_micros(params.now))
    rows = conn.execute(sql + " LIMIT ?", (*args, params.limit)).fetchall()
    now_us, retry_us = to_micros(params.now), to_micros(params.retry_at)
    for run_id, job_id, user_id, scheduled_for, attempt, max_retries, job_status in rows:
        if job_status == JobStatus.CANCELLED:
            status = RunStatus.CANCELLED
        elif attempts_left_after_lost_lease(attempt, max_retries):
            status = RunStatus.RETRY_SCHEDULED
        else:
            status = RunStatus.DEAD
        conn.execute(
            "UPDATE job_runs SET status = ?, completed_at = ?, error_message = ?,"
            " lease_owner = NULL, lease_until = NULL WHERE run_id = ?",
            (status.value, now_us, _LEASE_LOST, run_id),
        )
        if status is RunStatus.RETRY_SCHEDULED:
            conn.execute(
                _INSERT_RUN,
                (new_id(), job_id, user_id, scheduled_for, attempt + 1, now_us, retry_us),
            )
        _settle_job(conn, job_id, status, now_us)
    return len(rows)


def _cancel(
    conn: sqlite3.Connection, user_id: str, job_id: str, now_us: int
) -> CancelResult | None:
    row = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ? AND user_id = ?", (job_id, user_id)
    ).fetchone()
    if row is None:
        return None
    job = job_from_row(row)
    if job.status in JOB_TERMINAL:
        return CancelResult(job=job, running_run_ids=[])
    conn.execute(
        "UPDATE jobs SET status = 'CANCELLED', next_fire_at = NULL, updated_at = ?"
        " WHERE job_id = ?",
        (now_us, job_id),
    )
    conn.execute(
        "UPDATE job_runs SET status = 'CANCELLED', completed_at = ?,"
        " error_message = 'cancelled by the user' WHERE job_id = ? AND status = 'QUEUED'",
        (now_us, job_id),
    )
    running = [
        r[0]
        for r in conn.execute(
            "SELECT run_id FROM job_runs WHERE job_id = ? AND status = 'RUNNING'", (job_id,)
        )
    ]
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return CancelResult(job=job_from_row(row), running_run_ids=running)
