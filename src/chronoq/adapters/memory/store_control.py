"""``MemoryStore``'s job control (ports.jobs): pause, resume, trigger, update, purge.

A mixin over ``MemoryStore._db``; each method is atomic on the event loop (no await)
and checks whatever could refuse it before its first write.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from chronoq.adapters.memory.store_inputs import checked_policies
from chronoq.adapters.memory.store_policies import skip_run
from chronoq.adapters.memory.store_rows import JobRow, RunRow
from chronoq.adapters.memory.store_tables import Tables
from chronoq.domain.clock import check_aware
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Job, JobChanges, Run
from chronoq.domain.policies import SkipReason, first_fire_at, plan_resume, schedule_of
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus
from chronoq.errors import ConflictError, ValidationError
from chronoq.ports.jobs import PurgeResult

_RESCHEDULING = ("start_at", "end_at", "max_fires", "dst_gap", "dst_repeat")
_ONE_MICROSECOND = timedelta(microseconds=1)


class MemoryControl:
    """Mixed into ``MemoryStore`` (which provides ``_db`` and ``_own``)."""

    def _db(self) -> Tables:
        raise NotImplementedError

    def _own(self, user_id: str, job_id: str) -> JobRow | None:
        raise NotImplementedError

    async def pause_job(self, user_id: str, job_id: str, now: datetime) -> Job | None:
        now = check_aware(now, "now")
        row = self._own(user_id, job_id)
        if row is None:
            return None
        job = row.job
        if job.status in JOB_TERMINAL or job.status is JobStatus.PAUSED:
            return job
        db = self._db()
        held = [
            run
            for run in (db.runs[run_id] for run_id in row.runs)
            if run.status is RunStatus.QUEUED and not run.manual and run.available_at > now
        ]
        db.update_job(
            row,
            status=JobStatus.PAUSED,
            paused_fire_at=job.next_fire_at,
            next_fire_at=None,
            updated_at=now,
        )
        for run in held:
            skip_run(db, run, SkipReason.PAUSED, now)
        return row.job

    async def resume_job(
        self, user_id: str, job_id: str, now: datetime, *, catch_up: bool
    ) -> Job | None:
        now = check_aware(now, "now")
        row = self._own(user_id, job_id)
        if row is None:
            return None
        job = row.job
        if job.status is not JobStatus.PAUSED:
            return job
        plan = plan_resume(
            job_id=job.job_id,
            cron_schedule=job.cron_schedule,
            timezone=job.timezone,
            paused_fire_at=job.paused_fire_at,
            policies=job.policies,
            fire_count=job.fire_count,
            now=now,
            catch_up=catch_up,
        )
        db = self._db()
        for span in plan.skips:
            db.skips.insert_span(job_id=job.job_id, user_id=job.user_id, span=span, recorded_at=now)
        status = JobStatus.PENDING
        active = (db.runs[r].status in (RunStatus.QUEUED, RunStatus.RUNNING) for r in row.runs)
        if plan.next_fire_at is None and job.recurring and not any(active):
            status = JobStatus.COMPLETED  # its schedule ended while it was paused
        db.update_job(
            row,
            status=status,
            next_fire_at=plan.next_fire_at,
            paused_fire_at=None,
            fire_count=plan.fire_count,
            updated_at=now,
        )
        return row.job

    async def trigger_job(self, user_id: str, job_id: str, now: datetime) -> Run | None:
        now = check_aware(now, "now")
        row = self._own(user_id, job_id)
        if row is None:
            return None
        job = row.job
        if job.status in JOB_TERMINAL:
            raise ConflictError(f"job {job_id} is {job.status}: it has no more fires")
        if not job.recurring:
            raise ConflictError(f"job {job_id} is a one-shot job: it has one fire only")
        db = self._db()
        fire = now
        taken = {db.runs[r].scheduled_for for r in row.runs} | set(db.skips.of_job(job_id))
        while fire in taken or _nominal(job, fire):  # a fire of its own, never a scheduled one's
            fire += _ONE_MICROSECOND
        run = RunRow(
            run_id=new_id(),
            job_id=job.job_id,
            user_id=job.user_id,
            scheduled_for=fire,
            attempt=1,
            status=RunStatus.QUEUED,
            triggered_at=now,
            available_at=fire,
            manual=True,
        )
        db.add_run(run)
        return run.to_run()

    async def update_job(
        self, user_id: str, job_id: str, changes: JobChanges, now: datetime
    ) -> tuple[Job, str | None] | None:
        now = check_aware(now, "now")
        row = self._own(user_id, job_id)
        if row is None:
            return None
        job = row.job
        if job.status in JOB_TERMINAL:
            raise ConflictError(f"job {job_id} is {job.status}: it cannot change")
        fields = changes.fields
        _check_kind(job, changes)
        new: dict[str, Any] = {name: getattr(changes, name) for name in fields - {"payload"}}
        if "payload" in fields:
            new.update(
                payload=changes.payload,
                payload_ref=changes.payload_ref,
                payload_size=changes.payload_size,
            )
        if "policies" in fields:
            new["policies"] = checked_policies(changes.policies)
        if new.get("next_fire_at") is not None:
            new["next_fire_at"] = check_aware(new["next_fire_at"], "next_fire_at")
        after = replace(job, **new)
        if after.cron_schedule is not None:
            schedule_of(after.cron_schedule, after.timezone, after.policies)  # or refuse
        status = job.status
        if _reschedules(job, after, fields):
            first = first_fire_at(
                cron_schedule=after.cron_schedule,
                timezone=after.timezone,
                next_fire_at=None if after.recurring else new.get("next_fire_at"),
                policies=after.policies,
                now=now,
            )
            if status is JobStatus.PAUSED:
                new.pop("next_fire_at", None)
                new["paused_fire_at"] = first
            else:
                new["next_fire_at"] = first
                if first is None and status is JobStatus.PENDING:
                    status = JobStatus.COMPLETED
        self._db().update_job(row, **new, status=status, updated_at=now)
        old_ref = job.payload_ref
        replaced = old_ref if old_ref is not None and old_ref != row.job.payload_ref else None
        return row.job, replaced

    async def purge_job(self, user_id: str, job_id: str) -> PurgeResult | None:
        row = self._own(user_id, job_id)
        if row is None:
            return None
        db = self._db()
        runs = [db.runs[run_id] for run_id in row.runs]
        running = [r.run_id for r in runs if r.status is RunStatus.RUNNING]
        refs = [r.output_ref for r in runs if r.output_ref is not None]
        if row.job.payload_ref is not None:
            refs.insert(0, row.job.payload_ref)
        for run in runs:
            db.delete_run(run.run_id)
        db.delete_job(job_id)
        return PurgeResult(blob_refs=refs, running_run_ids=sorted(running))


def _nominal(job: Job, at: datetime) -> bool:
    """Whether ``at`` is a nominal fire of the job not claimed yet (its run would collide)."""
    anchor = job.next_fire_at or job.paused_fire_at
    if job.cron_schedule is None or anchor is None or at < anchor:
        return False
    if at == anchor:  # the next fire, even an explicit one off the schedule
        return True
    schedule = schedule_of(job.cron_schedule, job.timezone, job.policies)
    interval = getattr(schedule, "interval", None)
    if isinstance(interval, timedelta) and interval > timedelta(0):
        return (at - anchor) % interval == timedelta(0)
    return schedule.next_after(at - _ONE_MICROSECOND) == at


def _check_kind(job: Job, changes: JobChanges) -> None:
    """A recurring job stays recurring and a one-shot job stays one-shot."""
    fields = changes.fields
    if job.recurring and "next_fire_at" in fields:
        raise ValidationError(
            "a recurring job's next fire follows its schedule", field="next_fire_at"
        )
    if not job.recurring and "cron_schedule" in fields:
        raise ValidationError("a one-shot job has no schedule", field="cron_schedule")
    if job.recurring and "cron_schedule" in fields and changes.cron_schedule is None:
        raise ValidationError("a recurring job keeps a schedule", field="cron_schedule")


def _reschedules(before: Job, after: Job, fields: frozenset[str]) -> bool:
    if "next_fire_at" in fields:
        return True
    if (before.cron_schedule, before.timezone) != (after.cron_schedule, after.timezone):
        return True
    return any(
        getattr(before.policies, name) != getattr(after.policies, name) for name in _RESCHEDULING
    )
