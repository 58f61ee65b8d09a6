"""Row <-> domain conversions for SQLite (instants are epoch microseconds)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from chronoq.domain.clock import from_micros, to_micros
from chronoq.domain.jobs import ClaimedRun, Job, Run
from chronoq.domain.policies import (
    Policies,
    policies_from_values,
    policy_column_values,
)
from chronoq.domain.queues import DEFAULT_QUEUE
from chronoq.domain.states import JobStatus, RunStatus

POLICY_COLUMNS = (
    "overlap, misfire, catch_up_window_seconds, start_deadline_seconds, jitter_seconds,"
    " start_at, end_at, max_fires, dst_gap, dst_repeat"
)
"""``policies_from_row``'s columns (of ``jobs``), in order."""
JOB_COLUMNS = (
    "job_id, user_id, project_id, payload, payload_ref, payload_size, cron_schedule, timezone,"
    " next_fire_at, shard_id, status, max_retries, timeout_seconds, created_at, updated_at, "
    + POLICY_COLUMNS
    + ", fire_count, paused_fire_at, idempotency_key, request_hash, queue, priority"
)
RUN_COLUMNS = (
    "run_id, job_id, user_id, scheduled_for, attempt, status, triggered_at, available_at,"
    " started_at, completed_at, output, exit_code, worker_id, error_message, lease_until,"
    " interruptions, output_ref, manual, queue, priority"
)
CLAIMED_COLUMNS = (
    "r.run_id, r.job_id, r.attempt, r.scheduled_for, r.available_at, j.payload, j.payload_ref,"
    " j.timeout_seconds, j.max_retries, j.cron_schedule, r.interruptions,"
    " j.start_deadline_seconds IS NOT NULL"
    " OR (j.cron_schedule IS NOT NULL AND j.overlap <> 'allow')"
)
"""``claimed_from_row``'s columns, over ``job_runs r JOIN jobs j``. The last is
``ClaimedRun.start_check``: the job is gated (``starts.gated``) or has a start deadline."""


def _opt_time(value: int | None) -> Any:
    return None if value is None else from_micros(value)


def opt_micros(value: Any) -> int | None:
    """An optional instant as stored (epoch microseconds)."""
    return None if value is None else to_micros(value)


def policies_from_row(row: tuple[Any, ...] | list[Any]) -> Policies:
    """``Policies`` from ``POLICY_COLUMNS``."""
    return _policies(tuple(row))


@lru_cache(maxsize=4096)
def _policies(values: tuple[Any, ...]) -> Policies:
    """Cached: pickers and workers read a few distinct policies on thousands of rows."""
    return policies_from_values(values, _opt_time)


@lru_cache(maxsize=4096)
def policy_values(p: Policies) -> tuple[Any, ...]:
    """``POLICY_COLUMNS``' values for ``p`` (cached: a batch shares a few policies)."""
    return policy_column_values(p, lambda _name, value: opt_micros(value))


def job_from_row(row: tuple[Any, ...]) -> Job:
    return Job(
        job_id=row[0],
        user_id=row[1],
        project_id=row[2],
        payload=row[3],
        payload_ref=row[4],
        payload_size=row[5],
        cron_schedule=row[6],
        timezone=row[7],
        next_fire_at=_opt_time(row[8]),
        shard_id=row[9],
        status=JobStatus(row[10]),
        max_retries=row[11],
        timeout_seconds=row[12],
        created_at=from_micros(row[13]),
        updated_at=from_micros(row[14]),
        policies=policies_from_row(row[15:25]),
        fire_count=row[25],
        paused_fire_at=_opt_time(row[26]),
        idempotency_key=row[27],
        request_hash=row[28],
        queue=row[29],
        priority=row[30],
    )


def run_from_row(row: tuple[Any, ...]) -> Run:
    return Run(
        run_id=row[0],
        job_id=row[1],
        user_id=row[2],
        scheduled_for=from_micros(row[3]),
        attempt=row[4],
        status=RunStatus(row[5]),
        triggered_at=from_micros(row[6]),
        available_at=from_micros(row[7]),
        started_at=_opt_time(row[8]),
        completed_at=_opt_time(row[9]),
        output=row[10],
        exit_code=row[11],
        worker_id=row[12],
        error_message=row[13],
        lease_until=_opt_time(row[14]),
        interruptions=row[15],
        output_ref=row[16] if len(row) > 16 else None,
        manual=bool(row[17]) if len(row) > 17 else False,
        queue=row[18] if len(row) > 18 else DEFAULT_QUEUE,
        priority=row[19] if len(row) > 19 else 0,
    )


def claimed_from_row(row: tuple[Any, ...]) -> ClaimedRun:
    return ClaimedRun(
        run_id=row[0],
        job_id=row[1],
        attempt=row[2],
        scheduled_for=from_micros(row[3]),
        available_at=from_micros(row[4]),
        payload=row[5],
        payload_ref=row[6],
        timeout_seconds=row[7],
        max_retries=row[8],
        recurring=row[9] is not None,
        interruptions=row[10],
        start_check=bool(row[11]),
    )
