"""A new job's first fire claimed in its own insert, when it is due already.

A one-shot job submitted to run now would otherwise be inserted due, found by a picker
(a hint, a transaction of its own that locks the job and updates it) and only then get
its run. Claimed in the insert's transaction instead, the job is stored fired (no
``next_fire_at``: no picker ever sees it due, so it cannot be fired twice) and its run
is QUEUED in the same commit: one transaction and one hint fewer per job (issue 11:
light-load latency, PostgreSQL's work per job).

The decision is ``plan_claim``'s, as the picker would make it at ``now``; only the plain
case is taken here — one fire, nothing skipped. Everything else (schedules, a fire in
the future, a paused job, policies that skip) goes through a picker as before.

The stores get the jobs as accepted and the runs (``JobStore.insert_jobs(jobs, runs=)``)
and store each fired job as ``stored_fired`` makes it: no second ``Job`` per job in the
api (a ``dataclasses.replace`` was 5 of the 13 µs this took per job).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from chronoq.domain.claims import DueJob, PlannedRun, plan_claim
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Job, Run
from chronoq.domain.states import JobStatus, RunStatus


def fire_at_insert(job: Job, now: datetime) -> Run | None:
    """The run of ``job``'s first fire claimed at ``now``, in its insert; None when the
    fire is a picker's to claim (not a one-shot job due by ``now``, or a plan other than
    exactly one run)."""
    due = job.next_fire_at
    if job.cron_schedule is not None or job.status is not JobStatus.PENDING:
        return None
    if due is None or due > now:
        return None
    plan = plan_claim(
        DueJob(
            job_id=job.job_id,
            cron_schedule=None,
            timezone=job.timezone,
            due=due,
            policies=job.policies,
            fire_count=job.fire_count,
        ),
        now,
    )
    if len(plan.runs) != 1 or plan.skips or plan.next_fire_at is not None:
        return None
    return queued_run(job, plan.runs[0], now)


def queued_run(job: Job, planned: PlannedRun, now: datetime) -> Run:
    """The first attempt of ``job``'s planned fire, QUEUED, triggered ``now`` (in the
    insert here, or in a picker's claim)."""
    return Run(
        run_id=new_id(),
        job_id=job.job_id,
        user_id=job.user_id,
        scheduled_for=planned.scheduled_for,
        attempt=1,
        status=RunStatus.QUEUED,
        triggered_at=now,
        available_at=planned.available_at,
        queue=job.queue,
        priority=job.priority,
    )


def stored_fired(job: Job) -> Job:
    """``job`` as stored with its first fire claimed: not due any more (no picker ever
    fires it again), one fire counted."""
    return replace(job, next_fire_at=None, fire_count=job.fire_count + 1)


def fired_job_ids(
    jobs: Sequence[Job], runs: Sequence[Run], *, if_absent: bool = False
) -> frozenset[str]:
    """The ids of the jobs ``runs`` fire at insert; ``ValueError`` unless each run is the
    first attempt of a different job among ``jobs``, and for any run with ``if_absent``
    (a job skipped as present must not fire again). Every store checks this first."""
    if not runs:
        return frozenset()
    if if_absent:
        raise ValueError("runs fired at insert cannot go with if_absent")
    fired = frozenset(run.job_id for run in runs)
    if len(fired) != len(runs):
        raise ValueError("at most one run fired at insert per job")
    if not fired <= {job.job_id for job in jobs}:
        raise ValueError("a run fired at insert must be of a job of the same insert")
    if any(run.attempt != 1 or run.status is not RunStatus.QUEUED for run in runs):
        raise ValueError("a run fired at insert is a QUEUED first attempt")
    return fired
