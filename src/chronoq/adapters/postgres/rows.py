"""Record <-> domain conversions for PostgreSQL.

asyncpg returns ``timestamptz`` as aware UTC datetimes and ``uuid`` as UUID
objects; the domain wants ``str`` ids. Ids must be canonical (lowercase,
hyphenated) uuids: the form ``str(uuid.uuid4())`` produces and PostgreSQL
prints, so an id compares equal here exactly when it would as text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from functools import lru_cache
from typing import Any

from chronoq.domain.clock import check_aware
from chronoq.domain.jobs import ClaimedRun, Job, Run
from chronoq.domain.policies import (
    Policies,
    policies_from_values,
    policy_column_values,
)
from chronoq.domain.queues import DEFAULT_QUEUE
from chronoq.domain.states import JobStatus, RunStatus

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_id(value: object) -> bool:
    """Whether ``value`` is a canonical uuid string (anything else matches no row)."""
    return isinstance(value, str) and len(value) == 36 and _UUID.fullmatch(value) is not None


def aware(value: datetime, name: str = "datetime") -> datetime:
    """Refuse naive datetimes, as the embedded store does (``ValueError``)."""
    if value.tzinfo is None or value.utcoffset() is None:
        return check_aware(value, name)  # raises
    return value


def opt_aware(value: datetime | None, name: str = "datetime") -> datetime | None:
    return None if value is None else aware(value, name)


POLICY_WIDTH = 10
"""How many columns ``sql.POLICY_COLUMNS`` names."""


def policies_from_record(row: Sequence[Any], at: int = 0) -> Policies:
    """``Policies`` from ``sql.POLICY_COLUMNS`` starting at column ``at``."""
    return _policies(tuple(row[at : at + POLICY_WIDTH]))


@lru_cache(maxsize=4096)
def _policies(values: tuple[Any, ...]) -> Policies:
    """Cached: the picker reads a few distinct policies on thousands of rows (immutable)."""
    return policies_from_values(values, lambda value: value)


@lru_cache(maxsize=4096)
def policy_values(p: Policies) -> tuple[Any, ...]:
    """``sql.POLICY_COLUMNS``' values for ``p`` (cached: a batch shares a few policies)."""
    return policy_column_values(p, lambda name, value: opt_aware(value, name))


def job_args(jobs: Sequence[Job], fired: AbstractSet[str] = frozenset()) -> list[list[Any]]:
    """Column arrays for ``INSERT_JOBS``; the jobs in ``fired`` stored with their first
    fire claimed at insert (``fire_now.stored_fired``: not due, one fire counted)."""
    policies = [policy_values(j.policies) for j in jobs]
    return [
        [j.job_id for j in jobs],
        [j.user_id for j in jobs],
        [j.project_id for j in jobs],
        [j.payload for j in jobs],
        [j.payload_ref for j in jobs],
        [j.payload_size for j in jobs],
        [j.cron_schedule for j in jobs],
        [j.timezone for j in jobs],
        [None if j.job_id in fired else opt_aware(j.next_fire_at, "next_fire_at") for j in jobs],
        [j.shard_id for j in jobs],
        [j.status.value for j in jobs],
        [j.max_retries for j in jobs],
        [j.timeout_seconds for j in jobs],
        [aware(j.created_at, "created_at") for j in jobs],
        [aware(j.updated_at, "updated_at") for j in jobs],
        *([p[i] for p in policies] for i in range(POLICY_WIDTH)),
        [j.fire_count + (j.job_id in fired) for j in jobs],
        [opt_aware(j.paused_fire_at, "paused_fire_at") for j in jobs],
        [j.idempotency_key for j in jobs],
        [j.request_hash for j in jobs],
        [j.queue for j in jobs],
        [j.priority for j in jobs],
    ]


def fired_run_args(runs: Sequence[Run]) -> list[list[Any]]:
    """Column arrays of ``INSERT_FIRED_JOBS``'s runs ($32..$39)."""
    return [
        [r.run_id for r in runs],
        [r.job_id for r in runs],
        [r.user_id for r in runs],
        [aware(r.scheduled_for, "scheduled_for") for r in runs],
        [aware(r.triggered_at, "triggered_at") for r in runs],
        [aware(r.available_at, "available_at") for r in runs],
        [r.queue for r in runs],
        [r.priority for r in runs],
    ]


def job_from_record(row: Sequence[Any], at: int = 0) -> Job:
    """A ``Job`` from ``JOB_COLUMNS`` starting at column ``at``."""
    return Job(
        job_id=str(row[at]),
        user_id=row[at + 1],
        project_id=row[at + 2],
        payload=row[at + 3],
        payload_ref=row[at + 4],
        payload_size=row[at + 5],
        cron_schedule=row[at + 6],
        timezone=row[at + 7],
        next_fire_at=row[at + 8],
        shard_id=row[at + 9],
        status=JobStatus(row[at + 10]),
        max_retries=row[at + 11],
        timeout_seconds=row[at + 12],
        created_at=row[at + 13],
        updated_at=row[at + 14],
        policies=policies_from_record(row, at + 15),
        fire_count=row[at + 25],
        paused_fire_at=row[at + 26],
        idempotency_key=row[at + 27],
        request_hash=row[at + 28],
        queue=row[at + 29],
        priority=row[at + 30],
    )


def run_from_record(row: Sequence[Any]) -> Run:
    """A ``Run`` from ``RUN_COLUMNS``."""
    return Run(
        run_id=str(row[0]),
        job_id=str(row[1]),
        user_id=row[2],
        scheduled_for=row[3],
        attempt=row[4],
        status=RunStatus(row[5]),
        triggered_at=row[6],
        available_at=row[7],
        started_at=row[8],
        completed_at=row[9],
        output=row[10],
        exit_code=row[11],
        worker_id=row[12],
        error_message=row[13],
        lease_until=row[14],
        interruptions=row[15],
        output_ref=row[16] if len(row) > 16 else None,
        manual=bool(row[17]) if len(row) > 17 else False,
        queue=row[18] if len(row) > 18 else DEFAULT_QUEUE,
        priority=row[19] if len(row) > 19 else 0,
    )


def claimed_from_record(row: Sequence[Any]) -> ClaimedRun:
    """A ``ClaimedRun`` from the columns ``CLAIM_RUNS`` returns."""
    return ClaimedRun(
        run_id=str(row[0]),
        job_id=str(row[1]),
        attempt=row[2],
        scheduled_for=row[3],
        available_at=row[4],
        payload=row[5],
        payload_ref=row[6],
        timeout_seconds=row[7],
        max_retries=row[8],
        recurring=row[9] is not None,
        interruptions=row[10],
        start_check=bool(row[11]),
    )
