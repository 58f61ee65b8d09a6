"""``MemoryStore``'s job control (ports.jobs): pause, resume, trigger, update, purge.

A mixin over ``MemoryStore._db``; each method is atomic on the event loop (no await)
and checks whatever could refuse it before its first write.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from chronoq.adapters.memory.store_inputs import checked_policies
from chronoq.adapters.memory.store_limits import check_trigger_fires
from chronoq.adapters.memory.store_policies import skip_run
from chronoq.adapters.memory.store_rows import JobRow, RunRow
from chronoq.adapters.memory.store_tables import Tables
from chronoq.domain.changes import apply_changes, unclaimed_fire
from chronoq.domain.claims import plan_resume
from chronoq.domain.clock import check_aware
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Job, JobChanges, Run
from chronoq.domain.policies import SkipReason
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus
from chronoq.errors import ConflictError
from chronoq.ports.jobs import PurgeResult

_ONE_MICROSECOND = timedelta(microseconds=1)


_CHANGED = (
    "cron_schedule", "timezone", "next_fire_at", "paused_fire_at", "payload", "payload_ref",
    "payload_size", "max_retries", "timeout_seconds", "policies", "status", "updated_at",
    "queue", "priority",
)  # fmt: skip
"""The job fields a change may move (``domain.changes.apply_changes``)."""


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

    async def trigger_job(
        self, user_id: str, job_id: str, now: datetime, *, max_fires_per_minute: int = 0
    ) -> Run | None:
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
        if max_fires_per_minute > 0:
            check_trigger_fires(db, user_id, now, max_fires_per_minute)
        fire = now
        taken = {db.runs[r].scheduled_for for r in row.runs} | set(db.skips.of_job(job_id))
        # A fire of its own, never a scheduled one's.
        while fire in taken or unclaimed_fire(job, fire):
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
        if "policies" in changes.fields:
            changes = replace(changes, policies=checked_policies(changes.policies))
        changed = apply_changes(job, changes, now)
        new = changed.job
        self._db().update_job(
            row,
            **{name: getattr(new, name) for name in _CHANGED},
        )
        return row.job, changed.replaced_payload_ref

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
