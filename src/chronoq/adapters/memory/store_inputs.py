"""What ``MemoryStore`` accepts: the checks a database driver and schema would make.

A database refuses some text (PostgreSQL: NUL, lone surrogates) and every
adapter refuses naive instants; the memory store refuses the same, with the
same errors, so a test on it catches what production would refuse.
"""

from __future__ import annotations

from dataclasses import replace

from chronoq.domain.clock import check_aware
from chronoq.domain.jobs import Job, RunOutcome
from chronoq.domain.policies import Policies
from chronoq.errors import ValidationError


def checked_job(job: Job) -> Job:
    """The job as stored: text a database would refuse is refused, instants in UTC."""
    for name in ("job_id", "user_id", "project_id", "payload", "payload_ref", "cron_schedule",
                 "timezone", "idempotency_key", "request_hash"):  # fmt: skip
        check_text(getattr(job, name), name)
    return replace(
        job,
        policies=checked_policies(job.policies),
        next_fire_at=None if job.next_fire_at is None else check_aware(job.next_fire_at),
        created_at=check_aware(job.created_at, "created_at"),
        updated_at=check_aware(job.updated_at, "updated_at"),
    )


def checked_policies(policies: Policies) -> Policies:
    """The policies with their instants in UTC (naive ones refused)."""
    start, end = policies.start_at, policies.end_at
    return replace(
        policies,
        start_at=None if start is None else check_aware(start, "start_at"),
        end_at=None if end is None else check_aware(end, "end_at"),
    )


def checked_outcome(outcome: RunOutcome) -> RunOutcome:
    """The outcome with its instants in UTC (its status checked by ``check_outcomes``)."""
    return replace(
        outcome,
        started_at=check_aware(outcome.started_at, "started_at"),
        completed_at=check_aware(outcome.completed_at, "completed_at"),
        retry_at=None if outcome.retry_at is None else check_aware(outcome.retry_at, "retry_at"),
    )


def check_text(value: str | None, field: str) -> None:
    """Refuse what PostgreSQL refuses in text (NUL, lone surrogates), as ValidationError."""
    if value is None:
        return
    if "\x00" in value:
        raise ValidationError(f"{field} contains a NUL character", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{field} is not valid Unicode text", field=field) from None
