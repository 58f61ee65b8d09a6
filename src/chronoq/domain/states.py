"""Job and run states, and the one table of allowed run transitions.

The state machine is data: ``RUN_TRANSITIONS`` lists every move a run may make;
``transition`` applies one or raises. ``docs/state_machine.md`` draws it.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job stands (the seed's words, plus PAUSED and CANCELLED)."""

    PENDING = "PENDING"
    """Waiting for its next fire (or a retry). The picker moves it on a fire; a worker on claim."""
    RUNNING = "RUNNING"
    """A worker holds one of its runs. The worker moves it when the run ends."""
    COMPLETED = "COMPLETED"
    """Terminal: a one-shot job's fire completed."""
    FAILED = "FAILED"
    """Terminal: a one-shot job's fire failed with its attempts spent."""
    PAUSED = "PAUSED"
    """No fires until resumed (reserved for the pause API)."""
    CANCELLED = "CANCELLED"
    """Terminal: cancelled by its owner; no further fires; a running run is killed."""


JOB_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class RunStatus(StrEnum):
    """Where one attempt of one fire stands."""

    QUEUED = "QUEUED"
    """Created by the picker (or a retry); waits for ``available_at`` and a worker's claim."""
    RUNNING = "RUNNING"
    """Claimed by a worker under a lease; the worker (or the reaper on expiry) moves it."""
    COMPLETED = "COMPLETED"
    """Terminal: the executor succeeded."""
    FAILED = "FAILED"
    """Terminal: the executor failed and no attempts remain."""
    TIMED_OUT = "TIMED_OUT"
    """Terminal: killed at its timeout and no attempts remain."""
    CANCELLED = "CANCELLED"
    """Terminal: its job was cancelled."""
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    """This attempt failed (or its lease expired); attempt + 1 exists as a QUEUED run."""
    DEAD = "DEAD"
    """Terminal: its lease expired with no attempts left (a poison run)."""
    SKIPPED = "SKIPPED"
    """Terminal: not run, with a reason (overlap, misfire, paused)."""


RUN_TERMINAL = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.TIMED_OUT,
        RunStatus.CANCELLED,
        RunStatus.DEAD,
        RunStatus.SKIPPED,
    }
)
"""States that end a fire. RETRY_SCHEDULED ends only an attempt, so it is not here."""

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.SKIPPED}),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.TIMED_OUT,
            RunStatus.CANCELLED,
            RunStatus.RETRY_SCHEDULED,
            RunStatus.DEAD,
            RunStatus.QUEUED,  # handed back unstarted at a graceful shutdown
        }
    ),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.TIMED_OUT: frozenset(),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.RETRY_SCHEDULED: frozenset(),
    RunStatus.DEAD: frozenset(),
    RunStatus.SKIPPED: frozenset(),
}


class InvalidTransition(ValueError):
    """A state move the table does not allow."""


def can_transition(old: RunStatus, new: RunStatus) -> bool:
    """Whether a run may move from ``old`` to ``new``."""
    return new in RUN_TRANSITIONS[old]


def transition(old: RunStatus, new: RunStatus) -> RunStatus:
    """Apply a run transition, or raise ``InvalidTransition``."""
    if not can_transition(old, new):
        raise InvalidTransition(f"run cannot move from {old} to {new}")
    return new


def outcome_status(*, succeeded: bool, timed_out: bool, attempts_left: bool) -> RunStatus:
    """The state a finished attempt moves to: the whole retry decision in one place."""
    if succeeded:
        return RunStatus.COMPLETED
    if attempts_left:
        return RunStatus.RETRY_SCHEDULED
    return RunStatus.TIMED_OUT if timed_out else RunStatus.FAILED


def job_status_after_run(run_status: RunStatus, *, recurring: bool) -> JobStatus:
    """The job's state once one of its runs reaches ``run_status``."""
    if run_status is RunStatus.CANCELLED:
        return JobStatus.CANCELLED  # a run ends CANCELLED only because its job was
    if recurring or run_status is RunStatus.RETRY_SCHEDULED:
        return JobStatus.PENDING
    if run_status is RunStatus.COMPLETED:
        return JobStatus.COMPLETED
    return JobStatus.FAILED
