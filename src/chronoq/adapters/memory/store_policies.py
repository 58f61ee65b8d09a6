"""How ``MemoryStore`` applies the schedule policies (``domain.policies``) on its tables:
a claimed due job (``plan_claim``), a run about to start (``plan_start``), and the
skips either records in the fire ledger.

Like ``store_runs``, each function checks what could refuse it before it writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from chronoq.adapters.memory import store_runs
from chronoq.adapters.memory.store_rows import JobRow, RunRow, needs_start_check, run_row
from chronoq.adapters.memory.store_skips import SkipRow
from chronoq.adapters.memory.store_tables import Tables
from chronoq.domain.claims import ClaimPlan, DueJob, plan_claim
from chronoq.domain.fire_now import queued_run
from chronoq.domain.jobs import Run
from chronoq.domain.policies import SkipReason
from chronoq.domain.starts import StartAction, StartingRun, gated, plan_start
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus

_BUFFER_FALLBACK = timedelta(seconds=1)


def plan_due(tables: Tables, row: JobRow, now: datetime) -> ClaimPlan:
    """The claim of a due job (nothing written)."""
    job = row.job
    assert job.next_fire_at is not None  # it came from the due index
    plan = plan_claim(
        DueJob(
            job_id=job.job_id,
            cron_schedule=job.cron_schedule,
            timezone=job.timezone,
            due=job.next_fire_at,
            policies=job.policies,
            fire_count=job.fire_count,
        ),
        now,
    )
    # A fire that has a run already (a job rescheduled onto a fire claimed ahead) keeps
    # it: like the SQL stores' ON CONFLICT DO NOTHING, its run is not inserted twice.
    runs = [r for r in plan.runs if not tables.has_run(job.job_id, r.scheduled_for, 1)]
    return plan if len(runs) == len(plan.runs) else replace(plan, runs=runs)


def apply_claim(tables: Tables, row: JobRow, plan: ClaimPlan, now: datetime) -> list[Run]:
    """Write a claim: its runs (QUEUED), its skips, the job's next fire and fire count."""
    job = row.job
    runs: list[Run] = []
    for planned in plan.runs:
        run = run_row(queued_run(job, planned, now))
        tables.add_run(run)
        runs.append(run.to_run())
    for span in plan.skips:
        tables.skips.insert_span(job_id=job.job_id, user_id=job.user_id, span=span, recorded_at=now)
    status = job.status
    if plan.next_fire_at is None and not plan.runs and status not in JOB_TERMINAL:
        if job.recurring and status is JobStatus.PENDING:
            status = JobStatus.COMPLETED  # the schedule ended with no run of its own going
        elif not job.recurring:
            status = JobStatus.FAILED  # a one-shot's only fire was skipped
    tables.update_job(
        row,
        next_fire_at=plan.next_fire_at,
        fire_count=plan.fire_count,
        status=status,
        updated_at=now,
    )
    return runs


def skip_run(tables: Tables, run: RunRow, reason: SkipReason, at: datetime) -> None:
    """End a QUEUED or RUNNING (not started) run SKIPPED for ``reason``, recorded in the
    ledger, and settle its job."""
    tables.move(run, RunStatus.SKIPPED)
    run.completed_at = at
    run.lease_owner = run.lease_until = None
    run.error_message = f"skipped: {reason}"
    row = tables.jobs[run.job_id]
    if row.buffered_run_id == run.run_id:
        row.buffered_run_id = None
    tables.skips.insert(
        SkipRow(
            job_id=run.job_id,
            user_id=run.user_id,
            scheduled_for=run.scheduled_for,
            last_scheduled_for=run.scheduled_for,
            fire_count=1,
            reason=reason,
            run_id=run.run_id,
            manual=run.manual,
            recorded_at=at,
        )
    )


def start_runs(tables: Tables, worker_id: str, run_ids: Sequence[str], at: datetime) -> list[str]:
    """``Dispatch.mark_started``: each run passes ``plan_start``, oldest fire first (runs
    of one job in one batch: the older fire is "the previous run"); the started ones, in
    the order asked."""
    held = [tables.runs[r] for r in dict.fromkeys(run_ids) if r in tables.runs]
    held = [r for r in held if store_runs.holds(r, worker_id) and r.started_at is None]
    started = {
        run.run_id
        for run in sorted(held, key=lambda r: (r.scheduled_for, r.attempt))
        if _start_one(tables, run, at)
    }
    return [r for r in dict.fromkeys(run_ids) if r in started]


def _start_one(tables: Tables, run: RunRow, at: datetime) -> bool:
    row = tables.jobs[run.job_id]
    job = row.job
    is_gated = gated(job.recurring, job.policies)
    if not needs_start_check(job):
        run.started_at = at  # the fast path: nothing to decide
        return True
    running = tables.runs.get(row.running_run_id or "")
    if (
        running is None
        or running.run_id == run.run_id
        or running.status is not RunStatus.RUNNING
        or running.started_at is None
    ):
        running = None
    buffered = tables.runs.get(row.buffered_run_id or "")
    buffered_id = buffered.run_id if buffered and buffered.status is RunStatus.QUEUED else None
    plan = plan_start(
        StartingRun(
            run_id=run.run_id,
            job_id=run.job_id,
            scheduled_for=run.scheduled_for,
            attempt=run.attempt,
            manual=run.manual,
            recurring=job.recurring,
            policies=job.policies,
            running_run_id=None if running is None else running.run_id,
            buffered_run_id=buffered_id,
        ),
        at,
    )
    if plan.action is StartAction.START:
        run.started_at = at
        if is_gated:
            row.running_run_id = run.run_id
            if row.buffered_run_id == run.run_id:
                row.buffered_run_id = None
        return True
    if plan.action is StartAction.SKIP:
        assert plan.reason is not None
        skip_run(tables, run, plan.reason, at)
        if plan.reason is not SkipReason.OVERLAP:  # else its running run keeps the job RUNNING
            store_runs.settle_job(tables, run, RunStatus.SKIPPED, at)
        return False
    if plan.action is StartAction.CANCEL_PREVIOUS and running is not None:
        running.cancel_requested = True
    until = running.lease_until if running is not None else None
    tables.move(run, RunStatus.QUEUED)  # buffered: back in the queue, no attempt used
    run.lease_owner = run.lease_until = run.worker_id = None
    run.started_at = None
    tables.make_available(run, until if until is not None else at + _BUFFER_FALLBACK)
    row.buffered_run_id = run.run_id
    return False
