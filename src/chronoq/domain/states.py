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
    ACCEPTED = "ACCEPTED"
    """Buffered ingestion only (``--ingest log`` / ``redis://``): durably in the submission
    log, not yet moved into the store by a writer. Never stored: the api shows it when it
    reads a job from the log; the job is PENDING once a writer has moved it."""


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
    """This attempt failed (the job's own failure); attempt + 1 exists as a QUEUED run."""
    INTERRUPTED = "INTERRUPTED"
    """This attempt was cut off mid-run by the loss of its worker (a crash, a freeze past
    its membership ttl or lease, a kill at shutdown): not the job's failure. Attempt + 1
    exists as a QUEUED run, under the interruption budget, not ``max_retries``."""
    DEAD = "DEAD"
    """Terminal: its worker was lost more often than the interruption budget allows (a run
    that keeps killing its workers)."""
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
"""States that end a fire. RETRY_SCHEDULED and INTERRUPTED end only an attempt."""

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.SKIPPED}),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.TIMED_OUT,
            RunStatus.CANCELLED,
            RunStatus.RETRY_SCHEDULED,
            RunStatus.INTERRUPTED,
            RunStatus.DEAD,
            RunStatus.QUEUED,  # lost, handed back or buffered before it started: no attempt used
            RunStatus.SKIPPED,  # refused at its start (overlap, missed deadline): never ran
        }
    ),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.TIMED_OUT: frozenset(),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.RETRY_SCHEDULED: frozenset(),
    RunStatus.INTERRUPTED: frozenset(),
    RunStatus.DEAD: frozenset(),
    RunStatus.SKIPPED: frozenset(),
}


OUTCOME_STATUSES = frozenset(
    s
    for s in RUN_TRANSITIONS[RunStatus.RUNNING]
    if (s in RUN_TERMINAL or s is RunStatus.RETRY_SCHEDULED) and s is not RunStatus.SKIPPED
)
"""What a worker may report for an attempt (``Dispatch.complete_runs``): the ways out of
RUNNING that end it. Requeueing and INTERRUPTED belong to the lost-run rule (``lost_run``);
SKIPPED to the start rule (``starts.plan_start``, applied by ``Dispatch.mark_started``)."""


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


class LostRun(StrEnum):
    """What happens to a RUNNING run whose worker is gone (see ``lost_run``)."""

    REQUEUE = "REQUEUE"
    """Back to QUEUED as the same attempt: it never started, so no attempt was used."""
    INTERRUPT = "INTERRUPT"
    """INTERRUPTED, and attempt + 1 QUEUED with one more interruption counted."""
    DEAD = "DEAD"
    """DEAD: the interruption budget is spent."""
    CANCEL = "CANCEL"
    """CANCELLED: its job was cancelled (or its cancel requested); nothing more to run."""


LOST_TO_MEMBERSHIP = "interrupted: its worker's membership expired (the worker is gone)"
LOST_TO_LEASE = "interrupted: its lease expired (the worker stopped heartbeating)"
LOST_AT_SHUTDOWN = "interrupted: its worker stopped before the run finished"
LOST_TOO_OFTEN = "dead: interrupted by lost workers as often as the interruption budget allows"


def lost_run(
    *, started: bool, interruptions: int, max_interruptions: int, cancelled: bool
) -> LostRun:
    """The one rule for a run lost with its worker (dead member, expired lease, shutdown).

    Chronoq's own failures are not the job's failures: a run that had not started goes
    back to the queue without using an attempt; one cut off mid-run is redelivered
    while fewer than ``max_interruptions`` earlier attempts of the same fire were
    interrupted; neither counts against the job's ``max_retries``.
    """
    if cancelled:
        return LostRun.CANCEL
    if not started:
        return LostRun.REQUEUE
    if interruptions < max_interruptions:
        return LostRun.INTERRUPT
    return LostRun.DEAD


def job_status_after_run(run_status: RunStatus, *, recurring: bool) -> JobStatus:
    """The job's state once one of its runs reaches ``run_status``.

    Stores apply it only to a job that is not terminal and not PAUSED (those stay), and
    a recurring job whose schedule has ended (no next fire) becomes COMPLETED instead
    of PENDING once a run ends. A recurring job's run ends CANCELLED either because the
    job was cancelled (the job is CANCELLED already) or because the next fire replaced it
    (overlap ``cancel_previous``): the job goes on. A one-shot job whose only fire was
    SKIPPED (its start deadline passed) is FAILED; its fire ledger says why.
    """
    if run_status is RunStatus.CANCELLED and not recurring:
        return JobStatus.CANCELLED  # a one-shot run ends CANCELLED only because its job was
    if recurring or run_status in (RunStatus.RETRY_SCHEDULED, RunStatus.INTERRUPTED):
        return JobStatus.PENDING
    if run_status is RunStatus.COMPLETED:
        return JobStatus.COMPLETED
    return JobStatus.FAILED
