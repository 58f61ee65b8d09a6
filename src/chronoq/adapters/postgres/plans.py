"""The decisions the store makes on rows it has locked; they build the array arguments.

Pure functions of the rows and the domain rules (``chronoq.domain``), applied
in order exactly as the embedded store applies them one statement at a time,
so a batch has the same effect here as there: e.g. a second outcome for the
same run in one batch is stale, and a job never leaves a terminal state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chronoq.adapters.postgres.rows import aware
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Run, RunOutcome
from chronoq.domain.states import (
    JOB_TERMINAL,
    LOST_TOO_OFTEN,
    OUTCOME_STATUSES,
    JobStatus,
    LostRun,
    RunStatus,
    job_status_after_run,
    lost_run,
    transition,
)
from chronoq.errors import ValidationError

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
class Fires:
    """The runs ``claim_due`` creates and the next fires it sets (``sql.FIRE``)."""

    now: datetime
    runs: list[Run] = field(default_factory=list)
    _job_ids: list[Any] = field(default_factory=list)
    _following: list[datetime | None] = field(default_factory=list)

    def add(self, job_id: Any, user_id: str, due: datetime, following: datetime | None) -> None:
        self._job_ids.append(job_id)
        self._following.append(following)
        self.runs.append(
            Run(
                run_id=new_id(),
                job_id=str(job_id),
                user_id=user_id,
                scheduled_for=due,
                attempt=1,
                status=RunStatus.QUEUED,
                triggered_at=self.now,
                available_at=due,
            )
        )

    def args(self) -> tuple[Any, ...]:
        return (
            [r.run_id for r in self.runs],
            self._job_ids,
            [r.user_id for r in self.runs],
            [r.scheduled_for for r in self.runs],
            self.now,
            self._following,
        )


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


class JobStates:
    """The locked jobs' statuses as the writes of a batch move them, one after another.

    Mirrors the embedded store, which settles each job once per run, in order,
    and never moves a job out of a terminal state.
    """

    def __init__(self, rows: Sequence[Any]) -> None:
        self.status: dict[str, str] = {}
        self.recurring: dict[str, bool] = {}
        for job_id, status, recurring in rows:
            self.status.setdefault(str(job_id), status)
            self.recurring.setdefault(str(job_id), recurring)
        self._changed: dict[str, datetime | None] = {}

    def settle(self, job_id: str, run_status: RunStatus, at: datetime | None = None) -> None:
        """The job after one of its runs reached ``run_status`` (``job_status_after_run``)."""
        if self.status[job_id] in _TERMINAL_JOB:
            return
        new = job_status_after_run(run_status, recurring=self.recurring[job_id])
        self.status[job_id] = new.value
        self._changed[job_id] = at

    def requeued(self, job_id: str, at: datetime | None = None) -> None:
        """One of its runs went back to the queue: a RUNNING job waits again (PENDING)."""
        if self.status[job_id] == JobStatus.RUNNING:
            self.status[job_id] = JobStatus.PENDING.value
            self._changed[job_id] = at

    def changes(self) -> tuple[list[str], list[str], list[datetime | None]]:
        ids = list(self._changed)
        return ids, [self.status[i] for i in ids], [self._changed[i] for i in ids]


def check_outcomes(outcomes: Sequence[RunOutcome]) -> None:
    """Refuse a batch holding a status that does not end an attempt (before any write)."""
    for outcome in outcomes:
        if outcome.status not in OUTCOME_STATUSES:
            raise ValidationError(f"{outcome.status} is not an outcome of a run", field="status")


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
                )
            )
        self._jobs.settle(job_id, status, completed)
        return True

    def args(self) -> list[Any]:
        return [
            *_columns(self._ended, 7),
            *_columns(self._retries, 8),
            *self._jobs.changes(),
            self._refs,
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
            self._jobs.requeued(job_id, self._now)
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
                )
            )
        self._jobs.settle(job_id, status, self._now)

    def args(self) -> list[Any]:
        job_ids, statuses, _ = self._jobs.changes()
        ended = _columns(self._ended, 3)
        retries = _columns(self._retries, 6)
        return [*ended, self._now, self._retry_at, *retries, job_ids, statuses]


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows -> one list per column (``unnest``'s arguments); ``width`` for empty input."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
