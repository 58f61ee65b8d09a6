"""The Store port: jobs, fires and runs, in domain operations (not SQL).

Every operation is atomic. Writes that a stale actor could make are
compare-and-set and report whether they applied (DESIGN §5.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from chronoq.domain.jobs import ClaimedRun, Job, Run, RunOutcome
from chronoq.domain.states import JobStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class ListJobsParams:
    user_id: str
    status: JobStatus | None = None
    project_id: str | None = None
    cursor: str | None = None
    """Opaque cursor from a previous page's ``next_cursor``."""
    limit: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class JobPage:
    items: list[Job]
    next_cursor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimDueParams:
    shards: Sequence[int] | None
    """The shards this picker owns; ``None`` means all."""
    now: datetime
    horizon: datetime
    """Claim fires with ``next_fire_at <= horizon`` (a short look-ahead past ``now``)."""
    limit: int = 1000
    owner: str | None = None
    """Fencing (distributed mode): claim only from shards assigned to ``owner`` at
    ``epoch``, checked inside the claim transaction. None: no fencing (embedded)."""
    epoch: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRunsParams:
    worker_id: str
    now: datetime
    horizon: datetime
    """Claim QUEUED runs with ``available_at <= horizon``; they start at ``available_at``."""
    lease_until: datetime
    limit: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class ReapParams:
    now: datetime
    retry_at: datetime
    """When the next attempt of a reaped run becomes available."""
    expire_all: bool = False
    """Treat every RUNNING run as expired (embedded start-up: the previous process is gone)."""
    limit: int = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelResult:
    job: Job
    running_run_ids: list[str]
    """Runs a worker holds right now; the caller tells their workers to kill them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backlog:
    """How far behind dispatch is, for status displays."""

    due: int
    """Fires at or before ``now`` not yet claimed by a picker."""
    oldest_due: datetime | None
    queued: int
    """Runs available now and waiting for a worker."""
    running: int


class Store(Protocol):
    """The source of truth. Adapters: ``SqliteStore`` (embedded), PostgreSQL (distributed)."""

    async def start(self) -> None:
        """Open connections and apply migrations."""
        ...

    async def close(self) -> None:
        """Close; safe to call twice."""
        ...

    async def insert_jobs(self, jobs: Sequence[Job]) -> None:
        """Insert all jobs or none; each is due at its ``next_fire_at`` (None: never)."""
        ...

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        """The job if it exists AND belongs to ``user_id``; otherwise None."""
        ...

    async def list_jobs(self, params: ListJobsParams) -> JobPage:
        """The user's jobs, oldest first, after the cursor (ValidationError if it is bad)."""
        ...

    async def list_runs(self, user_id: str, job_id: str, limit: int = 100) -> list[Run]:
        """The job's runs, newest first (empty if the job is not the user's)."""
        ...

    async def cancel_job(self, user_id: str, job_id: str, now: datetime) -> CancelResult | None:
        """Cancel: no more fires, QUEUED runs CANCELLED, job CANCELLED. None if not found.

        Already finished jobs are returned unchanged. RUNNING runs stay with their
        worker, which the caller tells to kill them; the outcome it reports is recorded
        as it is (a run that finished first stays COMPLETED), except that a cancelled
        job is never retried.
        """
        ...

    async def claim_due(self, params: ClaimDueParams) -> list[Run]:
        """Claim due fires: for each, create the QUEUED run AND advance the job's next fire,
        in one transaction (DESIGN §5.3). A missed recurring fire runs once (coalesce)."""
        ...

    async def next_due_at(self, shards: Sequence[int] | None) -> datetime | None:
        """The earliest ``next_fire_at`` in these shards, for the picker's sleep."""
        ...

    async def claim_runs(self, params: ClaimRunsParams) -> list[ClaimedRun]:
        """Lease QUEUED runs to a worker (RUNNING, owner, lease) and mark their jobs RUNNING."""
        ...

    async def next_available_at(self) -> datetime | None:
        """The earliest ``available_at`` of QUEUED runs, for the workers' sleep."""
        ...

    async def complete_runs(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        """Record outcomes with compare-and-set on (RUNNING, worker, attempt); a
        RETRY_SCHEDULED outcome also creates attempt + 1. One bool per outcome: applied?"""
        ...

    async def extend_leases(
        self, worker_id: str, run_ids: Sequence[str], lease_until: datetime
    ) -> list[str]:
        """Extend the worker's leases; returns the run ids it still holds."""
        ...

    async def release_runs(self, worker_id: str, run_ids: Sequence[str]) -> int:
        """Hand unfinished runs back as QUEUED (same attempt) at a graceful stop."""
        ...

    async def backlog(self, now: datetime) -> Backlog:
        """Unclaimed due fires, waiting runs and running runs right now."""
        ...

    async def purge_finished(self, before: datetime, limit: int = 1000) -> list[str]:
        """Retention: delete up to ``limit`` finished runs (anything but QUEUED/RUNNING)
        completed before ``before``, then finished jobs (COMPLETED, FAILED, CANCELLED)
        last updated before it that have no runs left. Returns the payload references of
        the deleted jobs, whose blobs the caller removes. Recurring jobs stay; only their
        old runs go."""
        ...

    async def reap_expired(self, params: ReapParams) -> int:
        """Runs whose lease expired: RETRY_SCHEDULED with attempt + 1 QUEUED, or DEAD
        when attempts are spent. Returns how many were reaped."""
        ...
