"""The JobStore port: jobs, their runs and history, and the queries users make.

The source of truth (DESIGN §3). Adapters: ``SqliteStore`` (embedded),
``PostgresStore`` (distributed), ``MemoryStore`` (tests); each also
implements ``Dispatch`` over its own run table (``ports.store.Store``).

Contract, for every adapter:

* Every operation is atomic: it applies whole or not at all.
* Reads are tenant-scoped: a job or run of another user is reported exactly
  like a missing one (None / empty), never as an error that tells them apart.
* Text round-trips exactly (any Unicode except NUL, which callers refuse at
  the edge; run output is cleaned by ``domain.text`` before it gets here).
* Driver errors come out as ``chronoq.errors``: ``UnavailableError`` when the
  backend cannot be reached (retry later; nothing changed),
  ``ValidationError`` for input the backend refuses, ``ConflictError`` for a
  duplicate id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from chronoq.domain.jobs import LIST_OUTPUT_CHARS, Job, Run
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
class CancelResult:
    job: Job
    running_run_ids: list[str]
    """Runs a worker holds right now. Their cancel is recorded in the store (workers
    learn it at their next lease renewal); the caller may also hint the workers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backlog:
    """How far behind dispatch is, for status displays."""

    due: int
    """Fires at or before ``now`` not yet claimed by a picker."""
    oldest_due: datetime | None
    queued: int
    """Runs available now and waiting for a worker."""
    running: int


class JobStore(Protocol):
    """Jobs, runs and history. See the module docstring for the shared contract."""

    async def start(self) -> None:
        """Open connections and apply migrations; safe to call twice."""
        ...

    async def close(self) -> None:
        """Close; safe to call twice."""
        ...

    async def insert_jobs(self, jobs: Sequence[Job], *, if_absent: bool = False) -> None:
        """Insert all jobs or none; each is due at its ``next_fire_at`` (None: never).

        A job id that exists already is a ``ConflictError`` (nothing inserted), unless
        ``if_absent``: then such jobs are skipped and the others inserted — how an
        at-least-once submission log moves entries in, idempotently on the job id.
        """
        ...

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        """The job if it exists AND belongs to ``user_id``; otherwise None."""
        ...

    async def list_jobs(self, params: ListJobsParams) -> JobPage:
        """The user's jobs, oldest first, after the cursor (ValidationError if it is bad)."""
        ...

    async def list_runs(
        self, user_id: str, job_id: str, limit: int = 100, *, output_chars: int = LIST_OUTPUT_CHARS
    ) -> list[Run]:
        """The job's runs, newest fire first and within a fire newest attempt first
        (empty if the job is not the user's). Each run's output is cut to its first
        ``output_chars`` characters (``Run.output_truncated`` says so): the store never
        loads whole outputs for a list (``domain.jobs.LIST_OUTPUT_CHARS``)."""
        ...

    async def read_output(
        self, user_id: str, job_id: str, run_id: str, start: int, count: int
    ) -> str | None:
        """Characters ``start`` .. ``start + count - 1`` (0-based) of the run's output:
        shorter (or empty) past its end, ``""`` if it has none yet. None if the run is
        not this job's or the job not this user's. Reading a large output slice by slice
        keeps the memory of a download bounded. An offloaded output (``output_ref``) has
        only its head here."""
        ...

    async def output_ref(self, user_id: str, job_id: str, run_id: str) -> str | None:
        """The blob reference of the run's offloaded output (``BLOB_REF_PREFIX`` + key), or
        None: the output is inline (``read_output``), or the run is not this job's, or the
        job not this user's (the same answer: nothing to tell them apart)."""
        ...

    async def cancel_job(self, user_id: str, job_id: str, now: datetime) -> CancelResult | None:
        """Cancel: no more fires, QUEUED runs CANCELLED, job CANCELLED. None if not found.

        Already finished jobs are returned unchanged. RUNNING runs stay with their
        worker but their cancel is recorded: ``Dispatch.extend_leases`` reports them
        in ``LeaseRenewal.cancel`` so the worker kills them even if no hint arrives.
        The outcome the worker then reports is recorded as it is (a run that finished
        first stays COMPLETED), except that a cancelled job is never retried.
        """
        ...

    async def backlog(self, now: datetime) -> Backlog:
        """Unclaimed due fires, waiting runs and running runs right now."""
        ...

    async def purge_finished(self, before: datetime, limit: int = 1000) -> list[str]:
        """Retention: delete up to ``limit`` finished runs (anything but QUEUED/RUNNING)
        completed before ``before``, then finished jobs (COMPLETED, FAILED, CANCELLED)
        last updated before it that have no runs left. Returns the blob references of what
        it deleted — the deleted runs' offloaded outputs (``output_ref``) and the deleted
        jobs' payloads — whose blobs the caller removes. Recurring jobs stay; only their
        old runs go."""
        ...

    async def existing_job_ids(self, job_ids: Sequence[str]) -> set[str]:
        """Those of ``job_ids`` that are jobs in the store, whoever owns them (the leader's
        orphan-blob sweep; never user-facing). Strings that are not job ids are absent."""
        ...

    async def output_refs_of(self, run_ids: Sequence[str]) -> set[str]:
        """The output references (``Run.output_ref``) recorded on those of ``run_ids`` that
        exist, whoever owns them (the leader's orphan sweep of ``outputs/``; never
        user-facing). Strings that are not run ids are ignored."""
        ...
