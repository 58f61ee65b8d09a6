"""The JobStore transactions of ``SqliteStore``: plain functions of the connection.

Each runs on the store thread inside one savepoint of a group commit
(``SqliteThread``), so it applies whole or not at all. Instants are epoch
microseconds.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from chronoq.adapters.sqlite.dispatch import INSERT_DUE_RUN
from chronoq.adapters.sqlite.rows import (
    JOB_COLUMNS,
    RUN_COLUMNS,
    job_from_row,
    opt_micros,
    policy_values,
    run_from_row,
)
from chronoq.domain.clock import from_micros, to_micros
from chronoq.domain.jobs import LIST_OUTPUT_CHARS, Job, Run, output_cut
from chronoq.domain.states import JOB_TERMINAL
from chronoq.errors import ConflictError
from chronoq.ports.jobs import Backlog, CancelResult

CANCELLED_BY_USER = "cancelled by the user"

_INSERT_JOB = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join('?' * 31)})"
# Only a duplicate (job id, or the user's idempotency key) is skipped: NOT NULL and the
# like still fail the insert.
_INSERT_JOB_IF_ABSENT = _INSERT_JOB + " ON CONFLICT DO NOTHING"

_PURGE_RUNS = (
    "DELETE FROM job_runs WHERE run_id IN (SELECT run_id FROM job_runs"
    " WHERE status NOT IN ('QUEUED', 'RUNNING') AND completed_at < ? LIMIT ?)"
    " RETURNING output_ref"
)
_PURGE_JOBS = (
    "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs j"
    " WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND updated_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = j.job_id) LIMIT ?)"
    " RETURNING job_id, payload_ref"
)
_PURGE_SKIPS = (
    "DELETE FROM fire_skips WHERE (job_id, scheduled_for) IN (SELECT job_id, scheduled_for"
    " FROM fire_skips WHERE recorded_at < ? LIMIT ?)"
)


def insert_jobs(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], if_absent: bool) -> None:
    """Insert ``job_row``s; a duplicate id is a ConflictError unless ``if_absent``."""
    try:
        conn.executemany(_INSERT_JOB_IF_ABSENT if if_absent else _INSERT_JOB, rows)
    except sqlite3.IntegrityError as exc:
        if "idempotency_key" in str(exc):
            raise ConflictError("a job with that idempotency key exists already") from None
        raise ConflictError(f"a job with that id already exists: {exc}") from None


def insert_fired_runs(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """The runs of first fires claimed at insert (``fired_run_row``s), with their jobs."""
    conn.executemany(INSERT_DUE_RUN, rows)


def fired_run_row(run: Run) -> tuple[Any, ...]:
    """``dispatch.INSERT_DUE_RUN``'s values for a first fire claimed at insert."""
    return (
        run.run_id,
        run.job_id,
        run.user_id,
        to_micros(run.scheduled_for),
        to_micros(run.triggered_at),
        to_micros(run.available_at),
        run.queue,
        run.priority,
    )


def job_row(job: Job, fired: bool = False) -> tuple[Any, ...]:
    """The row of ``job``; ``fired``: with its first fire claimed at insert
    (``fire_now.stored_fired``: not due, one fire counted)."""
    return (
        job.job_id,
        job.user_id,
        job.project_id,
        job.payload,
        job.payload_ref,
        job.payload_size,
        job.cron_schedule,
        job.timezone,
        None if fired or job.next_fire_at is None else to_micros(job.next_fire_at),
        job.shard_id,
        job.status.value,
        job.max_retries,
        job.timeout_seconds,
        to_micros(job.created_at),
        to_micros(job.updated_at),
        *policy_values(job.policies),
        job.fire_count + fired,
        opt_micros(job.paused_fire_at),
        job.idempotency_key,
        job.request_hash,
        job.queue,
        job.priority,
    )


def get_job(conn: sqlite3.Connection, user_id: str, job_id: str) -> Job | None:
    row = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ? AND user_id = ?", (job_id, user_id)
    ).fetchone()
    return None if row is None else job_from_row(row)


def list_runs(
    conn: sqlite3.Connection, user_id: str, job_id: str, limit: int, output_chars: int
) -> list[Run]:
    # job_runs holds only the head of each output (migration 003): a list never reads a
    # whole one, so it can show at most LIST_OUTPUT_CHARS of each.
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM job_runs WHERE job_id = ? AND user_id = ?"
        " ORDER BY scheduled_for DESC, attempt DESC LIMIT ?",
        (job_id, user_id, limit),
    ).fetchall()
    chars = min(output_chars, LIST_OUTPUT_CHARS)
    return [output_cut(run_from_row(r), chars) for r in rows]


def read_output(
    conn: sqlite3.Connection, user_id: str, job_id: str, run_id: str, start: int, count: int
) -> str | None:
    row = conn.execute(
        "SELECT coalesce(substr(coalesce(o.output, r.output), ?, ?), '') FROM job_runs r"
        " LEFT JOIN run_outputs o ON o.run_id = r.run_id"
        " WHERE r.run_id = ? AND r.job_id = ? AND r.user_id = ?",
        (start + 1, count, run_id, job_id, user_id),
    ).fetchone()
    return None if row is None else str(row[0])


def cancel_job(
    conn: sqlite3.Connection, user_id: str, job_id: str, now_us: int
) -> CancelResult | None:
    """Cancel the job: no more fires, QUEUED runs CANCELLED, RUNNING runs cancel_requested."""
    job = get_job(conn, user_id, job_id)
    if job is None:
        return None
    if job.status in JOB_TERMINAL:
        return CancelResult(job=job, running_run_ids=[])
    conn.execute(
        "UPDATE jobs SET status = 'CANCELLED', next_fire_at = NULL, paused_fire_at = NULL,"
        " updated_at = ?"
        " WHERE job_id = ?",
        (now_us, job_id),
    )
    conn.execute(
        "UPDATE job_runs SET status = 'CANCELLED', completed_at = ?, error_message = ?"
        " WHERE job_id = ? AND status = 'QUEUED'",
        (now_us, CANCELLED_BY_USER, job_id),
    )
    running = conn.execute(
        "UPDATE job_runs SET cancel_requested = 1 WHERE job_id = ? AND status = 'RUNNING'"
        " RETURNING run_id",
        (job_id,),
    ).fetchall()
    after = get_job(conn, user_id, job_id)
    assert after is not None  # same transaction: it cannot have gone
    return CancelResult(job=after, running_run_ids=sorted(r[0] for r in running))


def backlog(conn: sqlite3.Connection, now_us: int) -> Backlog:
    due, oldest = conn.execute(
        "SELECT count(*), min(next_fire_at) FROM jobs"
        " WHERE next_fire_at IS NOT NULL AND next_fire_at <= ?",
        (now_us,),
    ).fetchone()
    queued = conn.execute(
        "SELECT count(*) FROM job_runs WHERE status = 'QUEUED' AND available_at <= ?", (now_us,)
    ).fetchone()[0]
    running = conn.execute("SELECT count(*) FROM job_runs WHERE status = 'RUNNING'").fetchone()[0]
    return Backlog(
        due=due,
        oldest_due=None if oldest is None else from_micros(oldest),
        queued=queued,
        running=running,
    )


def purge_finished(conn: sqlite3.Connection, cutoff_us: int, limit: int) -> list[str]:
    outputs = conn.execute(_PURGE_RUNS, (cutoff_us, limit)).fetchall()
    jobs = conn.execute(_PURGE_JOBS, (cutoff_us, limit)).fetchall()
    conn.executemany("DELETE FROM fire_skips WHERE job_id = ?", [(j[0],) for j in jobs])
    conn.execute(_PURGE_SKIPS, (cutoff_us, limit))
    refs = [r[0] for r in outputs] + [j[1] for j in jobs]
    return [ref for ref in refs if ref is not None]


def output_ref(conn: sqlite3.Connection, user_id: str, job_id: str, run_id: str) -> str | None:
    row = conn.execute(
        "SELECT output_ref FROM job_runs WHERE run_id = ? AND job_id = ? AND user_id = ?",
        (run_id, job_id, user_id),
    ).fetchone()
    return None if row is None else row[0]
