"""The checks of ``test_store_stateful.py``: a snapshot of the store, and what must hold of it.

Pure functions of snapshots read back through the port, so each names exactly
which promise of the Store contract or which invariant of RELIABILITY.md a
failure broke.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from chronoq.domain.jobs import ClaimedRun, Job, Run, RunOutcome
from chronoq.domain.states import (
    JOB_TERMINAL,
    LOST_TOO_OFTEN,
    RUN_TERMINAL,
    JobStatus,
    LostRun,
    RunStatus,
    can_transition,
    job_status_after_run,
    lost_run,
)

Fire = tuple[str, datetime]
"""A fire: ``(job_id, scheduled_for)``."""
Attempt = tuple[str, datetime, int]

MAX_INTERRUPTIONS = 1
"""The budget the machine reaps with (small, so DEAD is reachable in a short example)."""
ENDED_ATTEMPT = (RunStatus.RETRY_SCHEDULED, RunStatus.INTERRUPTED)
LOST_STATUS = {
    LostRun.REQUEUE: RunStatus.QUEUED,
    LostRun.INTERRUPT: RunStatus.INTERRUPTED,
    LostRun.DEAD: RunStatus.DEAD,
    LostRun.CANCEL: RunStatus.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the store holds about the accepted jobs, read back through the port."""

    jobs: dict[str, Job]
    runs: dict[str, Run]

    def fires(self) -> dict[Fire, list[Run]]:
        """Each fire's runs, attempt 1 first."""
        fires: dict[Fire, list[Run]] = defaultdict(list)
        for run in sorted(self.runs.values(), key=lambda r: r.attempt):
            fires[(run.job_id, run.scheduled_for)].append(run)
        return fires

    def holds(self, run_id: str, worker: str) -> bool:
        """Whether ``run_id`` is RUNNING under ``worker`` (worker_id is the lease owner then)."""
        run = self.runs.get(run_id)
        return run is not None and run.status is RunStatus.RUNNING and run.worker_id == worker

    def cancelled(self, run: Run) -> bool:
        return self.jobs[run.job_id].status is JobStatus.CANCELLED


def check_store(before: Snapshot, after: Snapshot, claimed: set[Fire]) -> None:
    """RELIABILITY.md's invariants, as far as one store shows them, after any step."""
    assert set(before.runs) <= set(after.runs), "a run disappeared"
    for job_id, job in after.jobs.items():
        old_job = before.jobs.get(job_id)
        if old_job is not None and old_job.status in JOB_TERMINAL:
            assert job.status is old_job.status, f"job {job_id} left {old_job.status}"
        if job.status is JobStatus.CANCELLED:
            assert job.next_fire_at is None
    for run in after.runs.values():
        if run.status is RunStatus.RUNNING:  # I4: held by someone, under a lease
            assert run.worker_id is not None and run.lease_until is not None
        was = before.runs.get(run.run_id)
        if was is None:
            assert run.status is RunStatus.QUEUED, "a run is born QUEUED"
            continue
        assert (was.job_id, was.scheduled_for, was.attempt) == (
            run.job_id,
            run.scheduled_for,
            run.attempt,
        )
        if was.status is not run.status:  # I6: one step of the state table per operation
            assert can_transition(was.status, run.status), f"{was.status} -> {run.status}"
    old_fires = before.fires()
    for fire, runs in after.fires().items():
        _check_fire(fire, runs, old_fires.get(fire, []), after, claimed)


def _check_fire(
    fire: Fire, runs: list[Run], old: list[Run], after: Snapshot, claimed: set[Fire]
) -> None:
    assert fire in claimed, f"fire {fire} was never returned by claim_due"
    assert [r.attempt for r in runs] == list(range(1, len(runs) + 1)), "attempts 1, 2, ..."
    assert len([r for r in runs if r.status in RUN_TERMINAL]) <= 1, "I2: one terminal run"
    for earlier in runs[:-1]:
        assert earlier.status in ENDED_ATTEMPT, "only the newest attempt may be live or final"
    for k, run in enumerate(runs):
        interrupted = sum(1 for r in runs[:k] if r.status is RunStatus.INTERRUPTED)
        assert run.interruptions == interrupted <= MAX_INTERRUPTIONS, "the interruption budget"
    if after.jobs[fire[0]].status is JobStatus.CANCELLED:
        assert runs[-1].status is not RunStatus.QUEUED, "a cancelled job has nothing queued"
    if old and len(runs) > len(old):  # a new attempt only when the last one just ended
        assert len(runs) == len(old) + 1, "one new attempt per step"
        assert old[-1].status is RunStatus.RUNNING
        assert runs[len(old) - 1].status in ENDED_ATTEMPT, "REQUEUE never adds an attempt"
    elif not old:
        assert len(runs) == 1


def lost_as_the_rule_says(
    before: Snapshot, after: Snapshot, run_id: str, reason: str, now: datetime, retry_at: datetime
) -> None:
    was, run = before.runs[run_id], after.runs[run_id]
    verdict = lost_run(
        started=was.started_at is not None,
        interruptions=was.interruptions,
        max_interruptions=MAX_INTERRUPTIONS,
        cancelled=before.cancelled(was),
    )
    assert run.status is LOST_STATUS[verdict]
    fire = after.fires()[(run.job_id, run.scheduled_for)]
    if verdict is LostRun.REQUEUE:
        assert (run.worker_id, run.lease_until, run.started_at) == (None, None, None)
        assert run.available_at == was.available_at
        assert fire[-1].run_id == run_id, "no attempt used"
        return
    assert run.completed_at == now
    assert run.lease_until is None
    messages = {
        LostRun.INTERRUPT: reason,
        LostRun.DEAD: LOST_TOO_OFTEN,
        LostRun.CANCEL: "cancelled by the user",
    }
    assert run.error_message == messages[verdict]
    if verdict is LostRun.INTERRUPT:
        new = fire[-1]
        assert (new.attempt, new.status) == (was.attempt + 1, RunStatus.QUEUED)
        assert (new.interruptions, new.triggered_at) == (was.interruptions + 1, now)
        assert new.available_at == retry_at
    else:
        assert fire[-1].run_id == run_id


def completed(before: Snapshot, after: Snapshot, outcome: RunOutcome, status: RunStatus) -> None:
    was, run = before.runs[outcome.run_id], after.runs[outcome.run_id]
    assert run.status is status
    assert (run.started_at, run.completed_at) == (outcome.started_at, outcome.completed_at)
    assert (run.output, run.exit_code, run.error_message) == (
        outcome.output,
        outcome.exit_code,
        outcome.error_message,
    )
    assert run.lease_until is None
    fire = after.fires()[(run.job_id, run.scheduled_for)]
    if status is RunStatus.RETRY_SCHEDULED:
        new = fire[-1]
        assert (new.attempt, new.status, new.interruptions) == (
            was.attempt + 1,
            RunStatus.QUEUED,
            was.interruptions,
        )
        assert (new.available_at, new.triggered_at) == (outcome.retry_at, outcome.completed_at)
    else:
        assert fire[-1].run_id == run.run_id
    job_was, job = before.jobs[run.job_id], after.jobs[run.job_id]
    if job_was.status not in JOB_TERMINAL:
        assert job.status is job_status_after_run(status, recurring=job.recurring)


def check_drained(snap: Snapshot, claimed: set[Fire]) -> None:
    """I1/I7 after the drain: every claimed fire has its one outcome; no schedule died."""
    fires = snap.fires()
    assert set(fires) == claimed
    for fire, runs in fires.items():
        assert runs[-1].status in RUN_TERMINAL, f"I1: fire {fire} has no outcome"
    for job_id, job in snap.jobs.items():
        mine = [runs[-1] for fire, runs in fires.items() if fire[0] == job_id]
        if job.recurring:
            assert job.status in (JobStatus.PENDING, JobStatus.CANCELLED)
            if job.status is JobStatus.PENDING:
                assert job.next_fire_at is not None, "a recurring schedule died"
        elif not mine:  # not fired yet: still due, unless cancelled first
            assert job.status is JobStatus.CANCELLED or job.next_fire_at is not None
        else:
            (final,) = mine
            expected = job_status_after_run(final.status, recurring=False)
            assert job.status in (expected, JobStatus.CANCELLED), "a one-shot job settled"


def equal(found: Job, job: Job) -> None:
    assert found == job


def all_cancelled(after: Snapshot, run_ids: Sequence[str], now: datetime) -> None:
    for run_id in run_ids:
        run = after.runs[run_id]
        assert (run.status, run.completed_at) == (RunStatus.CANCELLED, now)


def started_at(after: Snapshot, run_ids: Sequence[str], at: datetime) -> None:
    for run_id in run_ids:
        assert after.runs[run_id].started_at == at


def leased_until(after: Snapshot, run_ids: Sequence[str], until: datetime) -> None:
    for run_id in run_ids:
        assert after.runs[run_id].lease_until == until


def attempt_keys(runs: Sequence[Run | ClaimedRun], executed: set[Attempt]) -> set[Attempt]:
    """The attempts that now execute; none may have executed before."""
    keys = {(r.job_id, r.scheduled_for, r.attempt) for r in runs}
    assert not keys & executed, f"attempts executed twice: {keys & executed}"
    return keys


def running(run: Run) -> bool:
    return run.status is RunStatus.RUNNING


def outcome_of(
    claimed: ClaimedRun,
    worker: str,
    status: RunStatus,
    now: datetime,
    retry_at: datetime | None,
) -> RunOutcome:
    """What ``worker`` reports for its claimed run."""
    failed = status is not RunStatus.COMPLETED
    return RunOutcome(
        run_id=claimed.run_id,
        worker_id=worker,
        attempt=claimed.attempt,
        status=status,
        started_at=now,
        completed_at=now,
        output=f"{status.value} by {worker}",
        exit_code=1 if failed else 0,
        error_message="boom" if failed else None,
        retry_at=retry_at,
    )
