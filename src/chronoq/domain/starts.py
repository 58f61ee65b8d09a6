"""The start rule: whether a run may start now (``Dispatch.mark_started``), DESIGN §5.8.

``plan_start`` applies a run's start deadline, then its job's overlap policy
(``policies.Overlap``), when the run is about to start — not when the picker
claims its fire, which happens a little ahead of time. The stores apply it in the
transaction that records starts, with their bookkeeping of each gated job's running
and buffered run, so the policy holds across every worker and every restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from chronoq.domain.policies import Overlap, Policies, SkipReason, jitter_offset


class StartAction(StrEnum):
    START = "start"
    SKIP = "skip"
    """The run ends SKIPPED; the fire is recorded skipped for ``StartPlan.reason``."""
    BUFFER = "buffer"
    """The run goes back to QUEUED, available when the running one ends (at the latest at
    ``running_lease_until``, when it is judged again); it becomes the job's buffered run."""
    CANCEL_PREVIOUS = "cancel_previous"
    """Request the running run's cancel, and buffer this one (as BUFFER)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartingRun:
    """A run a worker is about to start, and what the store knows of its job."""

    run_id: str
    job_id: str
    scheduled_for: datetime
    attempt: int
    manual: bool
    recurring: bool
    policies: Policies
    running_run_id: str | None
    """The job's run that is RUNNING and started right now, if any (another one)."""
    buffered_run_id: str | None
    """The job's buffered run (QUEUED, waiting for the running one), if any other."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartPlan:
    action: StartAction
    reason: SkipReason | None = None


def plan_start(run: StartingRun, at: datetime) -> StartPlan:
    """Whether ``run`` may start ``at``: its start deadline, then the overlap policy.

    Only recurring jobs have an overlap policy (a one-shot has one fire). Retries
    (attempt > 1) are not new fires: the deadline does not apply to them.
    """
    p = run.policies
    if run.attempt == 1 and p.start_deadline_seconds is not None:
        due = run.scheduled_for + jitter_offset(run.job_id, run.scheduled_for, p.jitter_seconds)
        if at > due + timedelta(seconds=p.start_deadline_seconds):
            return StartPlan(action=StartAction.SKIP, reason=SkipReason.MISSED_DEADLINE)
    if not run.recurring or p.overlap is Overlap.ALLOW or run.running_run_id in (None, run.run_id):
        return StartPlan(action=StartAction.START)
    if p.overlap is Overlap.SKIP:
        return StartPlan(action=StartAction.SKIP, reason=SkipReason.OVERLAP)
    if run.buffered_run_id not in (None, run.run_id):
        return StartPlan(action=StartAction.SKIP, reason=SkipReason.OVERLAP)
    if p.overlap is Overlap.CANCEL_PREVIOUS:
        return StartPlan(action=StartAction.CANCEL_PREVIOUS)
    return StartPlan(action=StartAction.BUFFER)


def gated(recurring: bool, policies: Policies) -> bool:
    """Whether a job's runs go through ``plan_start``'s overlap bookkeeping (the store
    tracks its running and buffered run)."""
    return recurring and policies.overlap is not Overlap.ALLOW
