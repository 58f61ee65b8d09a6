"""``mark_started``: the start rule (``starts.plan_start``) on PostgreSQL.

Fast path, one statement (``START_PLAIN``): runs whose job is *plain* (not gated by
an overlap policy — a one-shot, or ``overlap = 'allow'`` — and without a start
deadline) start at once, locked in ``run_id`` order as before; the statement
returns, without locking them, the asked runs of other jobs. Only when there are
such runs does a transaction follow (``start_gated``), in the store's lock order:
their jobs (``job_id`` order), then their runs together with the jobs' running and
buffered runs (``run_id`` order); then ``plan_start`` decides each run in the order
asked, each seeing the decisions before it, and one statement writes them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chronoq.adapters.postgres import sql
from chronoq.adapters.postgres.rows import policies_from_record
from chronoq.adapters.postgres.settle import JobStates
from chronoq.adapters.postgres.skips import Skips, skip_ctes
from chronoq.domain.policies import SkipReason
from chronoq.domain.starts import StartAction, StartingRun, gated, plan_start
from chronoq.domain.states import RunStatus

START_PLAIN = (
    "WITH asked AS ("
    " SELECT r.run_id, (j.start_deadline_seconds IS NULL"
    " AND (j.cron_schedule IS NULL OR j.overlap = 'allow')) AS plain"
    " FROM job_runs r JOIN jobs j ON j.job_id = r.job_id"
    " WHERE r.run_id = ANY($1::uuid[]) AND r.lease_owner = $2 AND r.status = 'RUNNING'"
    " AND r.started_at IS NULL),"
    " held AS ("
    " SELECT run_id FROM job_runs WHERE run_id IN (SELECT run_id FROM asked WHERE plain)"
    " AND lease_owner = $2 AND status = 'RUNNING' AND started_at IS NULL"
    " ORDER BY run_id FOR NO KEY UPDATE),"
    " started AS ("
    " UPDATE job_runs r SET started_at = $3 FROM held WHERE r.run_id = held.run_id"
    " RETURNING r.run_id)"
    " SELECT run_id, true FROM started UNION ALL SELECT run_id, false FROM asked WHERE NOT plain"
)
"""Start the worker's leased, unstarted runs of plain jobs; name the others (``false``).
The jobs are only read (no lock): a policy changed meanwhile applies from the next start."""

LOCK_JOBS = (
    "SELECT " + sql.SETTLE_COLUMNS + ", " + sql.POLICY_COLUMNS + " FROM jobs j"
    " WHERE job_id IN (SELECT job_id FROM job_runs WHERE run_id = ANY($1::uuid[]))"
    " ORDER BY job_id FOR NO KEY UPDATE"
)
LOCK_RUNS = (
    "SELECT run_id, job_id, user_id, scheduled_for, attempt, status, lease_owner,"
    " started_at IS NOT NULL, lease_until, manual FROM job_runs"
    " WHERE run_id = ANY($1::uuid[]) ORDER BY run_id FOR NO KEY UPDATE"
)
APPLY = (
    "WITH touched AS ("
    " UPDATE job_runs r SET"
    " status = CASE t.kind WHEN 'skip' THEN 'SKIPPED' WHEN 'buffer' THEN 'QUEUED'"
    " ELSE r.status END,"
    " started_at = CASE t.kind WHEN 'start' THEN $6::timestamptz WHEN 'buffer' THEN NULL"
    " ELSE r.started_at END,"
    " completed_at = CASE t.kind WHEN 'skip' THEN $6::timestamptz ELSE r.completed_at END,"
    " lease_owner = CASE WHEN t.kind IN ('skip', 'buffer') THEN NULL ELSE r.lease_owner END,"
    " lease_until = CASE WHEN t.kind IN ('skip', 'buffer') THEN NULL ELSE r.lease_until END,"
    " worker_id = CASE t.kind WHEN 'buffer' THEN NULL ELSE r.worker_id END,"
    " available_at = CASE t.kind WHEN 'buffer' THEN t.available ELSE r.available_at END,"
    " error_message = CASE t.kind WHEN 'skip' THEN t.error ELSE r.error_message END,"
    " cancel_requested = r.cancel_requested OR t.cancel"
    " FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::bool[])"
    " AS t(run_id, kind, available, error, cancel)"
    " WHERE r.run_id = t.run_id)"
    + ", "
    + skip_ctes(12)
    + " UPDATE jobs SET status = t.status, updated_at = coalesce(t.at, jobs.updated_at),"
    " running_run_id = t.running, buffered_run_id = t.buffered"
    " FROM unnest($7::uuid[], $8::text[], $9::timestamptz[], $10::uuid[], $11::uuid[])"
    " AS t(job_id, status, at, running, buffered) WHERE jobs.job_id = t.job_id"
)
"""Every decision of the batch, one row per touched run (a run started here whose cancel a
later run of the batch requests is one row: ``start`` and ``cancel``). A buffered run
enters QUEUED again: the outbox trigger (005) clears its ``published_at``."""

_BUFFER_FALLBACK = timedelta(seconds=1)
_RUNNING = RunStatus.RUNNING.value


@dataclass(slots=True)
class _Run:
    run_id: str
    job_id: str
    user_id: str
    scheduled_for: datetime
    attempt: int
    status: str
    lease_owner: str | None
    started: bool
    lease_until: datetime | None
    manual: bool


def _fire_order(run: _Run | None) -> tuple[datetime, int]:
    return (
        (run.scheduled_for, run.attempt)
        if run is not None
        else (datetime.max.replace(tzinfo=UTC), 0)
    )


@dataclass(slots=True)
class _Write:
    kind: str = "none"
    available: datetime | None = None
    error: str | None = None
    cancel: bool = False


async def start_gated(conn: Any, worker_id: str, run_ids: Sequence[str], at: datetime) -> set[str]:
    """In the caller's transaction: decide and write the start of ``run_ids`` (runs of
    gated or deadlined jobs, oldest fire first: of two runs of one job in one batch, the
    older fire is "the previous run"); returns those that start."""
    job_rows = await conn.fetch(LOCK_JOBS, list(run_ids))
    jobs = JobStates([r[:6] for r in job_rows])
    policies = {str(r[0]): policies_from_record(r, 6) for r in job_rows}
    extra = [i for r in job_rows for i in (r[4], r[5]) if i is not None]
    runs = {
        str(r[0]): _Run(str(r[0]), str(r[1]), *r[2:])
        for r in await conn.fetch(LOCK_RUNS, [*run_ids, *extra])
    }
    writes: dict[str, _Write] = {}
    skips = Skips()
    started: set[str] = set()
    for run_id in sorted(run_ids, key=lambda r: _fire_order(runs.get(r))):
        run = runs.get(run_id)
        if run is None or run.status != _RUNNING or run.lease_owner != worker_id or run.started:
            continue
        job = run.job_id
        recurring = jobs.recurring[job]
        running = runs.get(jobs.running[job] or "")
        buffered = runs.get(jobs.buffered[job] or "")
        plan = plan_start(
            StartingRun(
                run_id=run_id,
                job_id=job,
                scheduled_for=run.scheduled_for,
                attempt=run.attempt,
                manual=run.manual,
                recurring=recurring,
                policies=policies[job],
                running_run_id=running.run_id
                if running is not None
                and running.run_id != run_id
                and running.status == _RUNNING
                and running.started
                else None,
                buffered_run_id=buffered.run_id
                if buffered is not None and buffered.status == RunStatus.QUEUED
                else None,
            ),
            at,
        )
        write = writes.setdefault(run_id, _Write())
        if plan.action is StartAction.START:
            write.kind = "start"
            run.started = True
            started.add(run_id)
            if gated(recurring, policies[job]):
                jobs.running[job] = run_id
                if jobs.buffered[job] == run_id:
                    jobs.buffered[job] = None
                jobs.touch(job)
        elif plan.action is StartAction.SKIP:
            reason = plan.reason
            assert reason is not None
            write.kind, write.error = "skip", f"skipped: {reason}"
            run.status = RunStatus.SKIPPED.value
            skips.run(job, run.user_id, run.scheduled_for, reason, run_id, run.manual, at)
            if jobs.buffered[job] == run_id:
                jobs.buffered[job] = None
                jobs.touch(job)
            # (A run not started was never the job's running run: settling it releases
            # nothing, so ``jobs.released`` stays empty here.)
            if reason is not SkipReason.OVERLAP:  # else its running run keeps the job RUNNING
                jobs.settle(job, RunStatus.SKIPPED, at, run_id)
        else:  # BUFFER, or CANCEL_PREVIOUS (then buffer)
            assert running is not None  # plan_start buffers only behind a running run
            if plan.action is StartAction.CANCEL_PREVIOUS:
                writes.setdefault(running.run_id, _Write()).cancel = True
            write.kind = "buffer"
            write.available = running.lease_until or at + _BUFFER_FALLBACK
            run.status, run.lease_owner = RunStatus.QUEUED.value, None
            jobs.buffered[job] = run_id
            jobs.touch(job)
    if writes:
        touched = [(k, w.kind, w.available, w.error, w.cancel) for k, w in writes.items()]
        columns = [list(c) for c in zip(*touched, strict=True)]
        await conn.execute(APPLY, *columns, at, *jobs.changes(), *skips.args())
    return started
