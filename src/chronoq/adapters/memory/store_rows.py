"""The rows of ``MemoryStore``'s job and run tables (``store_tables.Tables`` holds them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from chronoq.domain.clock import check_aware
from chronoq.domain.jobs import ClaimedRun, Job, Run
from chronoq.domain.queues import DEFAULT_QUEUE
from chronoq.domain.starts import gated
from chronoq.domain.states import RunStatus

Fire = tuple[str, datetime]
"""A fire: ``(job_id, scheduled_for)``."""


@dataclass(slots=True)
class JobRow:
    job: Job
    position: int
    """The job's place among its user's jobs (1, 2, ...; never reused)."""
    runs: list[str] = field(default_factory=list)
    """Its run ids in creation order."""
    due_version: int = 0
    running_run_id: str | None = None
    """Overlap bookkeeping (gated jobs): the run that started last and may still run."""
    buffered_run_id: str | None = None
    """Overlap bookkeeping (``buffer_one``): the run waiting for the running one."""


@dataclass(slots=True, kw_only=True)
class RunRow:
    """One row of the run table (``Run`` plus the columns only the store sees)."""

    run_id: str
    job_id: str
    user_id: str
    scheduled_for: datetime
    attempt: int
    status: RunStatus
    triggered_at: datetime
    available_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    output: str | None = None
    exit_code: int | None = None
    worker_id: str | None = None
    error_message: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    interruptions: int = 0
    cancel_requested: bool = False
    queue_version: int = 0
    output_ref: str | None = None
    published_at: datetime | None = None
    """The outbox (``store_outbox``): when a message naming this QUEUED run was sent."""
    manual: bool = False
    queue: str = DEFAULT_QUEUE
    """Its job's queue and priority when it was created (``Tables.add_run`` sets them)."""
    priority: int = 0

    @property
    def fire(self) -> Fire:
        return (self.job_id, self.scheduled_for)

    def claimed(self, job: Job) -> ClaimedRun:
        """This run as a worker holds it, with what it needs from its job."""
        return ClaimedRun(
            run_id=self.run_id,
            job_id=self.job_id,
            attempt=self.attempt,
            scheduled_for=self.scheduled_for,
            available_at=self.available_at,
            payload=job.payload,
            payload_ref=job.payload_ref,
            timeout_seconds=job.timeout_seconds,
            max_retries=job.max_retries,
            recurring=job.recurring,
            interruptions=self.interruptions,
            start_check=(
                gated(job.recurring, job.policies)
                or job.policies.start_deadline_seconds is not None
            ),
        )

    def to_run(self) -> Run:
        return Run(
            run_id=self.run_id,
            job_id=self.job_id,
            user_id=self.user_id,
            scheduled_for=self.scheduled_for,
            attempt=self.attempt,
            status=self.status,
            triggered_at=self.triggered_at,
            available_at=self.available_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
            output=self.output,
            exit_code=self.exit_code,
            worker_id=self.worker_id,
            error_message=self.error_message,
            lease_until=self.lease_until,
            interruptions=self.interruptions,
            output_ref=self.output_ref,
            manual=self.manual,
            queue=self.queue,
            priority=self.priority,
        )


def needs_start_check(job: Job) -> bool:
    """Whether the store must judge a run's start (``ClaimedRun.start_check``)."""
    return gated(job.recurring, job.policies) or job.policies.start_deadline_seconds is not None


def run_row(run: Run) -> RunRow:
    """The row of a new ``run`` (``Tables.add_run`` sets its queue and priority)."""
    return RunRow(
        run_id=run.run_id,
        job_id=run.job_id,
        user_id=run.user_id,
        scheduled_for=check_aware(run.scheduled_for),
        attempt=run.attempt,
        status=run.status,
        triggered_at=check_aware(run.triggered_at),
        available_at=check_aware(run.available_at),
        interruptions=run.interruptions,
    )
