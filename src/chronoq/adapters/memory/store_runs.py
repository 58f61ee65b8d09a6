"""How ``MemoryStore`` ends runs: outcomes (compare-and-set), lost runs, and their jobs.

Each function is one step of a store operation on ``Tables``: it checks
everything that could refuse the write before it changes anything, so an
operation that raises leaves the tables as they were.
"""

from __future__ import annotations

from datetime import datetime

from chronoq.adapters.memory.store_rows import RunRow
from chronoq.adapters.memory.store_tables import Tables
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import RunOutcome
from chronoq.domain.states import (
    JOB_TERMINAL,
    LOST_TOO_OFTEN,
    RUN_TERMINAL,
    JobStatus,
    LostRun,
    RunStatus,
    job_status_after_run,
    lost_run,
)

CANCELLED_BY_USER = "cancelled by the user"


_LOST_STATUS = {
    LostRun.INTERRUPT: RunStatus.INTERRUPTED,
    LostRun.DEAD: RunStatus.DEAD,
    LostRun.CANCEL: RunStatus.CANCELLED,
}


def settle_job(tables: Tables, run: RunRow, status: RunStatus, at: datetime) -> None:
    """Move the job on after its run ``run`` reached ``status`` (or left RUNNING): a
    terminal or PAUSED job stays; a recurring job whose schedule has ended completes.
    If ``run`` was the job's running run, its buffered run (if any) is released now."""
    row = tables.jobs[run.job_id]
    release_buffered(tables, run, at)
    job = row.job
    if job.status in JOB_TERMINAL or job.status is JobStatus.PAUSED:
        return
    after = job_status_after_run(status, recurring=job.recurring)
    ended = job.next_fire_at is None and job.paused_fire_at is None
    if job.recurring and ended and status in RUN_TERMINAL:
        after = JobStatus.COMPLETED
    tables.update_job(row, status=after, updated_at=at)


def release_buffered(tables: Tables, run: RunRow, at: datetime) -> None:
    """``run`` ended or left RUNNING: if it was its job's running run, forget it and make
    the buffered run (still QUEUED) available ``at``."""
    row = tables.jobs[run.job_id]
    if row.running_run_id != run.run_id:
        return
    row.running_run_id = None
    buffered = tables.runs.get(row.buffered_run_id or "")
    row.buffered_run_id = None
    if buffered is not None and buffered.status is RunStatus.QUEUED:
        tables.make_available(buffered, at)


def holds(run: RunRow | None, worker_id: str) -> bool:
    """Whether ``run`` is RUNNING under ``worker_id``'s lease (the compare in compare-and-set)."""
    return run is not None and run.status is RunStatus.RUNNING and run.lease_owner == worker_id


def cancel_requested(tables: Tables, run: RunRow) -> bool:
    return run.cancel_requested or tables.jobs[run.job_id].job.status is JobStatus.CANCELLED


def next_attempt(run: RunRow, *, triggered_at: datetime, available_at: datetime) -> RunRow:
    """A QUEUED row for attempt + 1 of the same fire, manual if it was (``interruptions``
    as the caller sets)."""
    return RunRow(
        run_id=new_id(),
        job_id=run.job_id,
        user_id=run.user_id,
        scheduled_for=run.scheduled_for,
        attempt=run.attempt + 1,
        status=RunStatus.QUEUED,
        triggered_at=triggered_at,
        available_at=available_at,
        interruptions=run.interruptions,
        manual=run.manual,
    )


def complete(tables: Tables, outcome: RunOutcome) -> bool:
    """Record one outcome if the run is RUNNING under (worker, attempt); whether it applied.

    Datetimes in ``outcome`` must already be aware UTC (the store checks them first).
    """
    run = tables.runs.get(outcome.run_id)
    if run is None or not holds(run, outcome.worker_id) or run.attempt != outcome.attempt:
        return False  # stale: the lease moved on; nothing changes
    status = outcome.status
    if status is RunStatus.RETRY_SCHEDULED and cancel_requested(tables, run):
        status = RunStatus.CANCELLED  # a cancelled job is never retried
    retry: RunRow | None = None
    if status is RunStatus.RETRY_SCHEDULED:
        available = outcome.retry_at or outcome.completed_at
        retry = next_attempt(run, triggered_at=outcome.completed_at, available_at=available)
        tables.check_new_run(retry.job_id, retry.scheduled_for, retry.attempt)
    tables.move(run, status)
    run.started_at = outcome.started_at
    run.completed_at = outcome.completed_at
    run.output = outcome.output
    run.output_ref = outcome.output_ref
    run.exit_code = outcome.exit_code
    run.error_message = outcome.error_message
    run.lease_owner = run.lease_until = None
    if retry is not None:
        tables.add_run(retry)
    settle_job(tables, run, status, outcome.completed_at)
    return True


def lose(
    tables: Tables,
    run: RunRow,
    *,
    now: datetime,
    retry_at: datetime,
    max_interruptions: int,
    reason: str,
) -> LostRun:
    """Apply ``domain.states.lost_run`` to a RUNNING run whose worker is gone.

    ``reason`` is the error of an INTERRUPTED run (which ``LOST_*`` it was).
    """
    verdict = lost_run(
        started=run.started_at is not None,
        interruptions=run.interruptions,
        max_interruptions=max_interruptions,
        cancelled=cancel_requested(tables, run),
    )
    if verdict is LostRun.REQUEUE:
        _requeue(tables, run, now)
        return verdict
    retry: RunRow | None = None
    if verdict is LostRun.INTERRUPT:
        retry = next_attempt(run, triggered_at=now, available_at=retry_at)
        retry.interruptions += 1
        tables.check_new_run(retry.job_id, retry.scheduled_for, retry.attempt)
    status = _LOST_STATUS[verdict]
    tables.move(run, status)
    run.completed_at = now
    run.error_message = {
        LostRun.INTERRUPT: reason,
        LostRun.DEAD: LOST_TOO_OFTEN,
        LostRun.CANCEL: CANCELLED_BY_USER,
    }[verdict]
    run.lease_owner = run.lease_until = None
    if retry is not None:
        tables.add_run(retry)
    settle_job(tables, run, status, now)
    return verdict


def _requeue(tables: Tables, run: RunRow, now: datetime) -> None:
    """Back to QUEUED as the same attempt: it never started, so nothing was used up."""
    tables.move(run, RunStatus.QUEUED)
    run.lease_owner = run.lease_until = run.worker_id = run.started_at = None
    release_buffered(tables, run, now)
    job = tables.jobs[run.job_id]
    if job.job.status is JobStatus.RUNNING:
        tables.update_job(job, status=JobStatus.PENDING, updated_at=now)
