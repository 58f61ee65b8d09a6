"""``PostgresStore``'s job control (a mixin, like ``outbox``): pause, resume, trigger,
change and purge a job.

Each is one transaction that first locks the user's job (``sql.LOCK_USER_JOB``), then
its runs in ``run_id`` order, then writes the totals last: the store's lock order
(``sql``). The decisions are the domain's (``claims.plan_resume``, ``changes.apply_changes``,
``changes.unclaimed_fire``), as in every store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from chronoq.adapters.postgres import limit_indexes, sql
from chronoq.adapters.postgres.limits import check_trigger_fires
from chronoq.adapters.postgres.rows import aware, is_id, job_from_record, policy_values
from chronoq.adapters.postgres.skips import TOTALS_CTE, Skips, skip_ctes
from chronoq.domain.changes import apply_changes, unclaimed_fire
from chronoq.domain.claims import plan_resume
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Job, JobChanges, Run
from chronoq.domain.policies import SkipReason
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus
from chronoq.errors import ConflictError
from chronoq.ports.jobs import PurgeResult

T = TypeVar("T")
_TICK = timedelta(microseconds=1)

PAUSE = (
    "WITH locked AS ("
    " SELECT run_id FROM job_runs WHERE $3 AND job_id = $1 AND status = 'QUEUED'"
    " AND NOT manual AND available_at > $2 ORDER BY run_id FOR NO KEY UPDATE),"
    " touched AS ("
    " UPDATE job_runs r SET status = 'SKIPPED', completed_at = $2, error_message = $4"
    " FROM locked l WHERE r.run_id = l.run_id RETURNING r.run_id, r.scheduled_for),"
    " skipped AS ("
    " INSERT INTO fire_skips (job_id, user_id, scheduled_for, last_scheduled_for, fire_count,"
    " reason, run_id, manual, recorded_at)"
    " SELECT $1, $5, scheduled_for, scheduled_for, 1, 'paused', run_id, false, $2 FROM touched"
    " ON CONFLICT DO NOTHING RETURNING reason, fire_count AS n), "
    + TOTALS_CTE
    + " UPDATE jobs SET status = 'PAUSED', paused_fire_at = next_fire_at, next_fire_at = NULL,"
    " updated_at = $2, buffered_run_id = CASE WHEN buffered_run_id IN"
    " (SELECT run_id FROM touched) THEN NULL ELSE buffered_run_id END"
    " WHERE job_id = $1 RETURNING " + sql.JOB_COLUMNS
)
"""Pause a locked job: its QUEUED scheduled runs of fires not yet due (``$3``: recurring
jobs only — a one-shot's claimed run is its only fire) end SKIPPED (``paused``), in the
ledger; the held fire moves to ``paused_fire_at``."""
RESUME = (
    "WITH "
    + skip_ctes(1)
    + " UPDATE jobs SET status = $11, next_fire_at = $12, paused_fire_at = NULL,"
    " fire_count = $13, updated_at = $14 WHERE job_id = $10 RETURNING " + sql.JOB_COLUMNS
)
ACTIVE = (
    "SELECT EXISTS (SELECT 1 FROM job_runs WHERE job_id = $1 AND status IN ('QUEUED', 'RUNNING'))"
)
FIRE_TAKEN = (
    "SELECT EXISTS (SELECT 1 FROM job_runs WHERE job_id = $1 AND scheduled_for = $2)"
    " OR EXISTS (SELECT 1 FROM fire_skips WHERE job_id = $1 AND scheduled_for = $2)"
)
TRIGGER = (
    "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
    " triggered_at, available_at, manual, queue, priority)"
    " SELECT $1, $2, $3, $4, 1, 'QUEUED', $5, $4, true, queue, priority FROM jobs"
    " WHERE job_id = $2"
)
UPDATE_JOB = (
    "UPDATE jobs SET cron_schedule = $2, timezone = $3, next_fire_at = $4, paused_fire_at = $5,"
    " payload = $6, payload_ref = $7, payload_size = $8, max_retries = $9,"
    " timeout_seconds = $10, overlap = $11, misfire = $12, catch_up_window_seconds = $13,"
    " start_deadline_seconds = $14, jitter_seconds = $15, start_at = $16, end_at = $17,"
    " max_fires = $18, dst_gap = $19, dst_repeat = $20, status = $21, updated_at = $22,"
    " queue = $23, priority = $24"
    " WHERE job_id = $1"
    " RETURNING " + sql.JOB_COLUMNS
)
PURGE_JOB = (
    "WITH locked AS ("
    " SELECT run_id FROM job_runs WHERE job_id = $1 ORDER BY run_id FOR UPDATE),"
    " runs AS ("
    " DELETE FROM job_runs r USING locked l WHERE r.run_id = l.run_id"
    " RETURNING r.run_id, r.status, r.output_ref),"
    " skips AS (DELETE FROM fire_skips WHERE job_id = $1),"
    " job AS (DELETE FROM jobs WHERE job_id = $1 RETURNING payload_ref)"
    " SELECT (SELECT payload_ref FROM job),"
    " ARRAY(SELECT output_ref FROM runs WHERE output_ref IS NOT NULL),"
    " ARRAY(SELECT run_id::text FROM runs WHERE status = 'RUNNING' ORDER BY run_id)"
)
"""Delete a locked job with its runs (locked in ``run_id`` order) and skips; its
idempotency key goes with its row."""


class PostgresControl:
    """Mixed into ``PostgresStore`` (which provides ``_transaction``)."""

    _limit_indexes: limit_indexes.LimitIndexes
    """Builds a limit's index when a count first needs it, set by the store."""

    async def _transaction(self, what: str, body: Callable[[Any], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def pause_job(self, user_id: str, job_id: str, now: datetime) -> Job | None:
        now = aware(now, "now")
        if not is_id(job_id):
            return None

        async def body(conn: Any) -> Job | None:
            row = await conn.fetchrow(sql.LOCK_USER_JOB, job_id, user_id)
            if row is None:
                return None
            job = job_from_record(row)
            if job.status in JOB_TERMINAL or job.status is JobStatus.PAUSED:
                return job
            reason = f"skipped: {SkipReason.PAUSED}"
            row = await conn.fetchrow(PAUSE, job_id, now, job.recurring, reason, user_id)
            return job_from_record(row)

        return await self._transaction("pause_job", body)

    async def resume_job(
        self, user_id: str, job_id: str, now: datetime, *, catch_up: bool
    ) -> Job | None:
        now = aware(now, "now")
        if not is_id(job_id):
            return None

        async def body(conn: Any) -> Job | None:
            row = await conn.fetchrow(sql.LOCK_USER_JOB, job_id, user_id)
            if row is None:
                return None
            job = job_from_record(row)
            if job.status is not JobStatus.PAUSED:
                return job
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
            skips = Skips()
            for span in plan.skips:
                skips.span(job_id, user_id, span, now)
            status = JobStatus.PENDING
            if (
                plan.next_fire_at is None
                and job.recurring
                and not await conn.fetchval(ACTIVE, job_id)
            ):
                status = JobStatus.COMPLETED  # its schedule ended while it was paused
            row = await conn.fetchrow(
                RESUME, *skips.args(), job_id, status.value, plan.next_fire_at,
                plan.fire_count, now,
            )  # fmt: skip
            return job_from_record(row)

        return await self._transaction("resume_job", body)

    async def trigger_job(
        self, user_id: str, job_id: str, now: datetime, *, max_fires_per_minute: int = 0
    ) -> Run | None:
        now = aware(now, "now")
        if not is_id(job_id):
            return None

        async def body(conn: Any) -> Run | None:
            row = await conn.fetchrow(sql.LOCK_USER_JOB, job_id, user_id)
            if row is None:
                return None
            job = job_from_record(row)
            if job.status in JOB_TERMINAL:
                raise ConflictError(f"the job is {job.status.value}: it fires no more")
            if not job.recurring:
                raise ConflictError("a one-shot job has one fire only: it cannot be triggered")
            if max_fires_per_minute > 0:  # after the job row (see postgres.limits)
                self._limit_indexes.need(limit_indexes.FIRES)
                await check_trigger_fires(conn, user_id, now, max_fires_per_minute)
            # A fire is (job, instant): a manual fire takes an instant of its own, 1 µs on
            # from any fire that has a row and from any nominal fire not claimed yet (its
            # claim would collide).
            fire = now
            while unclaimed_fire(job, fire) or await conn.fetchval(FIRE_TAKEN, job_id, fire):
                fire += _TICK
            run_id = new_id()
            await conn.execute(TRIGGER, run_id, job_id, user_id, fire, now)
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
                queue=job.queue,  # what TRIGGER copied from the locked job
                priority=job.priority,
            )

        return await self._transaction("trigger_job", body)

    async def update_job(
        self, user_id: str, job_id: str, changes: JobChanges, now: datetime
    ) -> tuple[Job, str | None] | None:
        now = aware(now, "now")
        if not is_id(job_id):
            return None

        async def body(conn: Any) -> tuple[Job, str | None] | None:
            row = await conn.fetchrow(sql.LOCK_USER_JOB, job_id, user_id)
            if row is None:
                return None
            changed = apply_changes(job_from_record(row), changes, now)
            row = await conn.fetchrow(UPDATE_JOB, job_id, *_columns(changed.job))
            return job_from_record(row), changed.replaced_payload_ref

        return await self._transaction("update_job", body)

    async def purge_job(self, user_id: str, job_id: str) -> PurgeResult | None:
        if not is_id(job_id):
            return None

        async def body(conn: Any) -> PurgeResult | None:
            if await conn.fetchrow(sql.LOCK_USER_JOB, job_id, user_id) is None:
                return None
            payload_ref, outputs, running = await conn.fetchrow(PURGE_JOB, job_id)
            refs = [payload_ref, *outputs]
            return PurgeResult(
                blob_refs=[r for r in refs if r is not None], running_run_ids=list(running)
            )

        return await self._transaction("purge_job", body)


def _columns(job: Job) -> list[Any]:
    """``UPDATE_JOB``'s values ($2 ..): the columns a change may move."""
    return [
        job.cron_schedule,
        job.timezone,
        job.next_fire_at,
        job.paused_fire_at,
        job.payload,
        job.payload_ref,
        job.payload_size,
        job.max_retries,
        job.timeout_seconds,
        *policy_values(job.policies),
        job.status.value,
        job.updated_at,
        job.queue,
        job.priority,
    ]
