"""Job control of ``SqliteStore``: pause, resume, trigger, change, purge, and the
idempotency keys. Plain functions of the connection, each one transaction on the store
thread; the schedule rules are ``domain.policies``' (``plan_resume``, ``first_fire_at``).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from chronoq.adapters.sqlite.dispatch import INSERT_RUN
from chronoq.adapters.sqlite.jobs import get_job
from chronoq.adapters.sqlite.ledger import record_skips, run_skip_row, span_rows
from chronoq.adapters.sqlite.limits import check_trigger_fires
from chronoq.adapters.sqlite.rows import JOB_COLUMNS, job_from_row, opt_micros, policy_values
from chronoq.domain.changes import apply_changes, unclaimed_fire
from chronoq.domain.claims import plan_resume
from chronoq.domain.clock import from_micros, to_micros
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Job, JobChanges, Run
from chronoq.domain.policies import SkipReason
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus
from chronoq.errors import ConflictError
from chronoq.ports.jobs import PurgeResult

_ONE_MICROSECOND = timedelta(microseconds=1)
_SKIP_PAUSED = (
    "UPDATE job_runs SET status = 'SKIPPED', completed_at = ?, error_message = ?"
    " WHERE job_id = ? AND status = 'QUEUED' AND manual = 0 AND available_at > ?"
    " RETURNING run_id, scheduled_for"
)
_FORGET_STALE_BUFFER = (
    "UPDATE jobs SET buffered_run_id = NULL WHERE job_id = ? AND buffered_run_id IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.run_id = jobs.buffered_run_id"
    " AND r.status = 'QUEUED')"
)
_UPDATE_JOB = (
    "UPDATE jobs SET cron_schedule = ?, timezone = ?, next_fire_at = ?, paused_fire_at = ?,"
    " payload = ?, payload_ref = ?, payload_size = ?, max_retries = ?, timeout_seconds = ?,"
    " overlap = ?, misfire = ?, catch_up_window_seconds = ?, start_deadline_seconds = ?,"
    " jitter_seconds = ?, start_at = ?, end_at = ?, max_fires = ?, dst_gap = ?, dst_repeat = ?,"
    " status = ?, updated_at = ?, queue = ?, priority = ?"
    " WHERE job_id = ?"
)


def _owned(conn: sqlite3.Connection, user_id: str, job_id: str) -> Job:
    job = get_job(conn, user_id, job_id)
    assert job is not None  # same transaction: it cannot have gone
    return job


def pause_job(conn: sqlite3.Connection, user_id: str, job_id: str, now_us: int) -> Job | None:
    job = get_job(conn, user_id, job_id)
    if job is None or job.status in JOB_TERMINAL or job.status is JobStatus.PAUSED:
        return job
    conn.execute(
        "UPDATE jobs SET status = 'PAUSED', paused_fire_at = next_fire_at, next_fire_at = NULL,"
        " updated_at = ? WHERE job_id = ?",
        (now_us, job_id),
    )
    if job.recurring:  # a one-shot's claimed run is its only fire: it goes on
        reason = SkipReason.PAUSED
        skipped = conn.execute(
            _SKIP_PAUSED, (now_us, f"skipped: {reason}", job_id, now_us)
        ).fetchall()
        rows = [run_skip_row(job_id, user_id, at, reason, run, False) for run, at in skipped]
        record_skips(conn, rows, now_us)
        conn.execute(_FORGET_STALE_BUFFER, (job_id,))
    return _owned(conn, user_id, job_id)


def resume_job(
    conn: sqlite3.Connection, user_id: str, job_id: str, now: datetime, catch_up: bool
) -> Job | None:
    job = get_job(conn, user_id, job_id)
    if job is None or job.status is not JobStatus.PAUSED:
        return job
    now_us = to_micros(now)
    plan = plan_resume(
        job_id=job_id,
        cron_schedule=job.cron_schedule,
        timezone=job.timezone,
        paused_fire_at=job.paused_fire_at,
        policies=job.policies,
        fire_count=job.fire_count,
        now=now,
        catch_up=catch_up,
    )
    record_skips(conn, span_rows(job_id, user_id, plan.skips), now_us)
    status = JobStatus.PENDING
    if plan.next_fire_at is None and job.recurring and not _active_runs(conn, job_id):
        status = JobStatus.COMPLETED  # its schedule ended while it was paused
    conn.execute(
        "UPDATE jobs SET status = ?, next_fire_at = ?, paused_fire_at = NULL, fire_count = ?,"
        " updated_at = ? WHERE job_id = ?",
        (status.value, opt_micros(plan.next_fire_at), plan.fire_count, now_us, job_id),
    )
    return _owned(conn, user_id, job_id)


def _active_runs(conn: sqlite3.Connection, job_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM job_runs WHERE job_id = ? AND status IN ('QUEUED', 'RUNNING') LIMIT 1",
        (job_id,),
    ).fetchone()
    return row is not None


def trigger_job(
    conn: sqlite3.Connection, user_id: str, job_id: str, now: datetime, max_fires: int = 0
) -> Run | None:
    job = get_job(conn, user_id, job_id)
    if job is None:
        return None
    if job.status in JOB_TERMINAL:
        raise ConflictError(f"the job is {job.status.value}: it fires no more")
    if not job.recurring:
        raise ConflictError("a one-shot job has one fire only: it cannot be triggered")
    if max_fires > 0:
        check_trigger_fires(conn, user_id, now, max_fires)
    at_us = to_micros(now)
    # A fire is (job, instant): a manual fire takes an instant of its own, 1 µs on from any
    # fire that has a row and from any nominal fire not claimed yet (its claim would collide).
    while (
        unclaimed_fire(job, from_micros(at_us))
        or conn.execute(
            "SELECT EXISTS (SELECT 1 FROM job_runs WHERE job_id = ? AND scheduled_for = ?)"
            " OR EXISTS (SELECT 1 FROM fire_skips WHERE job_id = ? AND scheduled_for = ?)",
            (job_id, at_us, job_id, at_us),
        ).fetchone()[0]
    ):
        at_us += 1
    run_id = new_id()
    conn.execute(INSERT_RUN, (run_id, job_id, user_id, at_us, 1, to_micros(now), at_us, 0, True))
    fire = from_micros(at_us)
    return Run(
        run_id=run_id,
        job_id=job_id,
        user_id=user_id,
        scheduled_for=fire,
        attempt=1,
        status=RunStatus.QUEUED,
        triggered_at=now,
        available_at=fire,
        manual=True,
        queue=job.queue,  # what INSERT_RUN copied from the job
        priority=job.priority,
    )


def update_job(
    conn: sqlite3.Connection, user_id: str, job_id: str, changes: JobChanges, now: datetime
) -> tuple[Job, str | None] | None:
    job = get_job(conn, user_id, job_id)
    if job is None:
        return None
    changed = apply_changes(job, changes, now)
    new = changed.job
    conn.execute(
        _UPDATE_JOB,
        (
            new.cron_schedule,
            new.timezone,
            opt_micros(new.next_fire_at),
            opt_micros(new.paused_fire_at),
            new.payload,
            new.payload_ref,
            new.payload_size,
            new.max_retries,
            new.timeout_seconds,
            *policy_values(new.policies),
            new.status.value,
            to_micros(now),
            new.queue,
            new.priority,
            job_id,
        ),
    )
    return _owned(conn, user_id, job_id), changed.replaced_payload_ref


def purge_job(conn: sqlite3.Connection, user_id: str, job_id: str) -> PurgeResult | None:
    row = conn.execute(
        "SELECT payload_ref FROM jobs WHERE job_id = ? AND user_id = ?", (job_id, user_id)
    ).fetchone()
    if row is None:
        return None
    running = conn.execute(
        "SELECT run_id FROM job_runs WHERE job_id = ? AND status = 'RUNNING' ORDER BY run_id",
        (job_id,),
    ).fetchall()
    # run_outputs go with their runs (ON DELETE CASCADE).
    outputs = conn.execute(
        "DELETE FROM job_runs WHERE job_id = ? RETURNING output_ref", (job_id,)
    ).fetchall()
    conn.execute("DELETE FROM fire_skips WHERE job_id = ?", (job_id,))
    conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
    refs = [row[0], *(o[0] for o in outputs)]
    return PurgeResult(
        blob_refs=[r for r in refs if r is not None], running_run_ids=[r[0] for r in running]
    )


def job_by_idempotency_key(conn: sqlite3.Connection, user_id: str, key: str) -> Job | None:
    row = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = ? AND idempotency_key = ?",
        (user_id, key),
    ).fetchone()
    return None if row is None else job_from_row(row)


def forget_idempotency_keys(conn: sqlite3.Connection, before_us: int, limit: int) -> int:
    return conn.execute(
        "UPDATE jobs SET idempotency_key = NULL, request_hash = NULL WHERE seq IN (SELECT seq"
        " FROM jobs WHERE idempotency_key IS NOT NULL AND created_at < ?"
        " ORDER BY created_at LIMIT ?)",
        (before_us, limit),
    ).rowcount
