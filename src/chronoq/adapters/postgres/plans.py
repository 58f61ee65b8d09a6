"""The decisions the store makes on rows it has locked; they build the array arguments.

Pure functions of the rows and the domain rules (``chronoq.domain``), applied
in order exactly as the embedded store applies them one statement at a time,
so a batch has the same effect here as there: e.g. a second outcome for the
same run in one batch is stale, and a job never leaves a terminal state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chronoq.adapters.postgres.rows import aware
from chronoq.adapters.postgres.settle import JobStates
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import RunOutcome
from chronoq.domain.states import (
    JOB_TERMINAL,
    LOST_TOO_OFTEN,
    JobStatus,
    LostRun,
    RunStatus,
    lost_run,
    transition,
)

_TERMINAL_JOB = frozenset(s.value for s in JOB_TERMINAL)
_RUNNING = RunStatus.RUNNING.value
CANCELLED_BY_USER = "cancelled by the user"

_LOST_TO = {
    LostRun.REQUEUE: RunStatus.QUEUED,
    LostRun.INTERRUPT: RunStatus.INTERRUPTED,
    LostRun.DEAD: RunStatus.DEAD,
    LostRun.CANCEL: RunStatus.CANCELLED,
}


@dataclass(slots=True)
class LockedRun:
    """A run row the transaction holds locked (``sql.LOCK_RUNS`` columns after the id)."""

    job_id: Any
    user_id: str
    scheduled_for: datetime
    attempt: int
    status: str
    lease_owner: str | None
    interruptions: int
    started: bool
    cancel_requested: bool
    manual: bool
    """A manual fire's run: its next attempts are manual too."""


class Completion:
    """Compare-and-set of outcomes against locked runs, in order (``sql.COMPLETE``)."""

    def __init__(self, jobs: JobStates) -> None:
        self._jobs = jobs
        self._ended: list[tuple[Any, ...]] = []
        self._refs: list[str | None] = []
        """Each ended run's ``output_ref`` (``$19``: after the jobs' columns)."""
        self._retries: list[tuple[Any, ...]] = []

    def add(self, outcome: RunOutcome, run: LockedRun | None) -> bool:
        """Apply ``outcome`` if ``run`` is still RUNNING under its worker at its attempt."""
        if (
            run is None
            or run.status != _RUNNING
            or run.lease_owner != outcome.worker_id
            or run.attempt != outcome.attempt
        ):
            return False
        job_id = str(run.job_id)
        status = outcome.status
        if self._jobs.status[job_id] == JobStatus.CANCELLED and status is RunStatus.RETRY_SCHEDULED:
            status = RunStatus.CANCELLED
        run.status = transition(RunStatus.RUNNING, status).value  # a 2nd outcome is stale
        completed = aware(outcome.completed_at, "completed_at")
        self._ended.append(
            (
                outcome.run_id,
                status.value,
                aware(outcome.started_at, "started_at"),
                completed,
                outcome.output,
                outcome.exit_code,
                outcome.error_message,
            )
        )
        self._refs.append(outcome.output_ref)
        if status is RunStatus.RETRY_SCHEDULED:
            retry_at = completed if outcome.retry_at is None else aware(outcome.retry_at)
            self._retries.append(
                (
                    new_id(),
                    run.job_id,
                    run.user_id,
                    run.scheduled_for,
                    outcome.attempt + 1,
                    run.interruptions,
                    completed,
                    retry_at,
                    run.manual,
                )
            )
        self._jobs.settle(job_id, status, completed, outcome.run_id)
        return True

    def args(self) -> list[Any]:
        ids, statuses, ats, running, buffered = self._jobs.changes()
        released = self._jobs.released
        *retries, manual = _columns(self._retries, 9)
        return [
            *_columns(self._ended, 7),
            *retries,
            ids,
            statuses,
            ats,
            self._refs,
            running,
            buffered,
            list(released),
            list(released.values()),
            manual,
        ]


class LostRuns:
    """The lost-run rule (``domain.states.lost_run``) for runs the caller locked, in order
    (``sql.END_LOST``): the reaper's and a worker's hand-back share it."""

    def __init__(
        self, jobs: JobStates, *, now: datetime, retry_at: datetime, max_interruptions: int
    ) -> None:
        self._jobs = jobs
        self._now = now
        self._retry_at = retry_at
        self._max = max_interruptions
        self._ended: list[tuple[Any, ...]] = []
        self._retries: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self._ended)

    def add(self, run_id: Any, run: LockedRun, reason: str) -> None:
        """Decide for one RUNNING run; ``reason`` is the error of an INTERRUPTED one."""
        job_id = str(run.job_id)
        decision = lost_run(
            started=run.started,
            interruptions=run.interruptions,
            max_interruptions=self._max,
            cancelled=run.cancel_requested or self._jobs.status[job_id] == JobStatus.CANCELLED,
        )
        status = transition(RunStatus(run.status), _LOST_TO[decision])
        run.status = status.value  # listed twice: the second is no longer RUNNING
        error = {
            LostRun.REQUEUE: None,
            LostRun.INTERRUPT: reason,
            LostRun.DEAD: LOST_TOO_OFTEN,
            LostRun.CANCEL: CANCELLED_BY_USER,
        }[decision]
        self._ended.append((run_id, status.value, error))
        if decision is LostRun.REQUEUE:
            self._jobs.requeued(job_id, self._now, str(run_id))
            return
        if decision is LostRun.INTERRUPT:
            self._retries.append(
                (
                    new_id(),
                    run.job_id,
                    run.user_id,
                    run.scheduled_for,
                    run.attempt + 1,
                    run.interruptions + 1,
                    run.manual,
                )
            )
        self._jobs.settle(job_id, status, self._now, str(run_id))

    def args(self) -> list[Any]:
        job_ids, statuses, ats, running, buffered = self._jobs.changes()
        ended = _columns(self._ended, 3)
        *retries, manual = _columns(self._retries, 7)
        released = list(self._jobs.released)
        return [
            *ended,
            self._now,
            self._retry_at,
            *retries,
            job_ids,
            statuses,
            running,
            buffered,
            released,
            ats,
            manual,
        ]


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows -> one list per column (``unnest``'s arguments); ``width`` for empty input."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
