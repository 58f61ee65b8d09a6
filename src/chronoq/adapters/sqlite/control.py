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
from chronoq.adapters.sqlite.rows import JOB_COLUMNS, job_from_row, opt_micros, policy_values
from chronoq.domain.clock import from_micros, to_micros
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Job, JobChanges, Run
from chronoq.domain.policies import (
    Policies,
    SkipReason,
    first_fire_at,
    plan_resume,
    schedule_of,
)
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus
from chronoq.errors import ConflictError, ValidationError
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
    " status = ?, updated_at = ?"
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


def trigger_job(conn: sqlite3.Connection, user_id: str, job_id: str, now: datetime) -> Run | None:
    job = get_job(conn, user_id, job_id)
    if job is None:
        return None
    if job.status in JOB_TERMINAL:
        raise ConflictError(f"the job is {job.status.value}: it fires no more")
    if not job.recurring:
        raise ConflictError("a one-shot job has one fire only: it cannot be triggered")
    at_us = to_micros(now)
    # A fire is (job, instant): a manual fire takes an instant of its own, 1 µs on from any
    # fire that has a row and from any nominal fire not claimed yet (its claim would collide).
    while (
        _nominal(job, at_us)
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
    )


def _nominal(job: Job, at_us: int) -> bool:
    """Whether ``at_us`` is a nominal fire of the (recurring) job not claimed yet."""
    anchor = job.next_fire_at or job.paused_fire_at
    if job.cron_schedule is None or anchor is None:
        return False
    at = from_micros(at_us)
    if at <= anchor:
        return at == anchor  # the next fire itself, even an explicit one off the schedule
    schedule = schedule_of(job.cron_schedule, job.timezone, job.policies)
    interval = getattr(schedule, "interval", None)
    if isinstance(interval, timedelta) and interval > timedelta(0):
        return (at - anchor) % interval == timedelta(0)
    return schedule.next_after(at - _ONE_MICROSECOND) == at


def update_job(
    conn: sqlite3.Connection, user_id: str, job_id: str, changes: JobChanges, now: datetime
) -> tuple[Job, str | None] | None:
    job = get_job(conn, user_id, job_id)
    if job is None:
        return None
    if job.status in JOB_TERMINAL:
        raise ConflictError(f"the job is {job.status.value}: it cannot change")
    f = changes.fields
    if "cron_schedule" in f and (not job.recurring or changes.cron_schedule is None):
        raise ValidationError(
            "a one-shot job has no schedule (and a recurring one keeps one)",
            field="cron_schedule",
        )
    if "next_fire_at" in f and job.recurring:
        raise ValidationError(
            "a recurring job's next fire follows its schedule", field="next_fire_at"
        )
    cron = changes.cron_schedule if "cron_schedule" in f else job.cron_schedule
    tz = changes.timezone if "timezone" in f else job.timezone
    policies = changes.policies if "policies" in f else job.policies
    held = job.paused_fire_at if job.status is JobStatus.PAUSED else job.next_fire_at
    one_shot_fire = changes.next_fire_at if "next_fire_at" in f else held
    old, new = job.policies, policies
    moved = (
        cron != job.cron_schedule
        or tz != job.timezone
        or ("next_fire_at" in f and changes.next_fire_at != held)
        or _bounds(old) != _bounds(new)
    )
    status = job.status
    if moved and (job.recurring or one_shot_fire is not None):
        held = first_fire_at(
            cron_schedule=cron,
            timezone=tz,
            next_fire_at=None if job.recurring else one_shot_fire,
            policies=policies,
            now=now,
        )
        if held is None and status is JobStatus.PENDING:
            status = JobStatus.COMPLETED
    paused = status is JobStatus.PAUSED
    payload, ref, size = job.payload, job.payload_ref, job.payload_size
    if "payload" in f:
        payload, ref, size = changes.payload, changes.payload_ref, changes.payload_size
    conn.execute(
        _UPDATE_JOB,
        (
            cron,
            tz,
            None if paused else opt_micros(held),
            opt_micros(held) if paused else None,
            payload,
            ref,
            size,
            changes.max_retries if "max_retries" in f else job.max_retries,
            changes.timeout_seconds if "timeout_seconds" in f else job.timeout_seconds,
            *policy_values(policies),
            status.value,
            to_micros(now),
            job_id,
        ),
    )
    replaced = job.payload_ref if job.payload_ref is not None and job.payload_ref != ref else None
    return _owned(conn, user_id, job_id), replaced


def _bounds(p: Policies) -> tuple[object, ...]:
    """The policies that move a job's fires (a change recomputes its next one)."""
    return (p.start_at, p.end_at, p.max_fires, p.dst_gap, p.dst_repeat)


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
