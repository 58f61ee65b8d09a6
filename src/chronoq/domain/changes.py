"""Changes to a job, decided once for every store: a ``PATCH /v1/jobs/{id}``
(``apply_changes``) and the instant a manual fire may take (``unclaimed_fire``).

``apply_changes(job, changes, now)`` returns the job as it is to be stored, or
raises: a finished job cannot change (``ConflictError``), a recurring job keeps
a schedule and a one-shot job has none (``ValidationError``), and a one-shot job
whose one fire was already claimed cannot be re-timed (``ConflictError``: that
would give it a second fire). Changes apply from the next fire; a run already
created keeps what it was created with. A change to anything that decides when
the job fires (schedule, timezone, a one-shot's time, ``start_at``, ``end_at``,
``max_fires``, the DST policy) recomputes the next fire from ``now`` — held in
``paused_fire_at`` while the job is paused; if there is none left the job is
COMPLETED. The stores write the returned job's columns in their own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from chronoq.domain.clock import check_aware
from chronoq.domain.jobs import Job, JobChanges
from chronoq.domain.policies import Policies, first_fire_at, schedule_of
from chronoq.domain.states import JOB_TERMINAL, JobStatus
from chronoq.errors import ConflictError, ValidationError


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangedJob:
    job: Job
    """The job to store (``updated_at`` is ``now``)."""
    replaced_payload_ref: str | None
    """The payload reference the change replaced: its blob is the caller's to delete."""


def apply_changes(job: Job, changes: JobChanges, now: datetime) -> ChangedJob:
    """The job after ``changes`` at ``now`` (see the module docstring)."""
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
    paused = job.status is JobStatus.PAUSED
    held = job.paused_fire_at if paused else job.next_fire_at
    if "next_fire_at" in f and held is None:
        raise ConflictError("the one-shot job's fire was already claimed: it cannot be re-timed")
    after = replace(
        job,
        cron_schedule=changes.cron_schedule if "cron_schedule" in f else job.cron_schedule,
        timezone=changes.timezone if "timezone" in f else job.timezone,
        policies=changes.policies if "policies" in f else job.policies,
        max_retries=changes.max_retries if "max_retries" in f else job.max_retries,
        timeout_seconds=changes.timeout_seconds if "timeout_seconds" in f else job.timeout_seconds,
        queue=changes.queue if "queue" in f else job.queue,
        priority=changes.priority if "priority" in f else job.priority,
        updated_at=now,
    )
    if "payload" in f:
        after = replace(
            after,
            payload=changes.payload,
            payload_ref=changes.payload_ref,
            payload_size=changes.payload_size,
        )
    if after.cron_schedule is not None:  # refuses a schedule that never fires, as at submit
        schedule_of(after.cron_schedule, after.timezone, after.policies)
    wanted = held
    if "next_fire_at" in f and changes.next_fire_at is not None:
        wanted = check_aware(changes.next_fire_at, "next_fire_at")
    moved = (
        after.cron_schedule != job.cron_schedule
        or after.timezone != job.timezone
        or wanted != held
        or _bounds(after.policies) != _bounds(job.policies)
    )
    if moved and (job.recurring or held is not None):
        nxt = first_fire_at(
            cron_schedule=after.cron_schedule,
            timezone=after.timezone,
            next_fire_at=None if job.recurring else wanted,
            policies=after.policies,
            now=now,
        )
        if paused:
            after = replace(after, paused_fire_at=nxt)
        else:
            ended = nxt is None and job.status is JobStatus.PENDING
            after = replace(
                after, next_fire_at=nxt, status=JobStatus.COMPLETED if ended else job.status
            )
    old = job.payload_ref
    replaced = old if old is not None and old != after.payload_ref else None
    return ChangedJob(job=after, replaced_payload_ref=replaced)


def _bounds(p: Policies) -> tuple[object, ...]:
    """The policies that move a job's fires (a change recomputes its next one)."""
    return (p.start_at, p.end_at, p.max_fires, p.dst_gap, p.dst_repeat)


def unclaimed_fire(job: Job, at: datetime) -> bool:
    """Whether ``at`` is a nominal fire of the (recurring) job not claimed yet: its next
    fire — even an explicit one off the schedule — or a later fire of its schedule. A
    manual fire (``trigger_job``) must not take such an instant: the fire's own run
    would collide with it when the picker claims it."""
    anchor = job.next_fire_at or job.paused_fire_at
    if job.cron_schedule is None or anchor is None or at < anchor:
        return False
    if at == anchor:
        return True
    schedule = schedule_of(job.cron_schedule, job.timezone, job.policies)
    interval = getattr(schedule, "interval", None)
    if isinstance(interval, timedelta) and interval > timedelta(0):
        return (at - anchor) % interval == timedelta(0)
    return schedule.next_after(at - timedelta(microseconds=1)) == at
