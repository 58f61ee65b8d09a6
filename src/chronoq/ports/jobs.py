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
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from chronoq.domain.jobs import LIST_OUTPUT_CHARS, Fire, Job, JobChanges, Run
from chronoq.domain.live_output import RunLive
from chronoq.domain.policies import SkipReason
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.errors import ValidationError


class JobKind(StrEnum):
    """A list filter: one-shot jobs (no schedule) or recurring ones (a cron schedule)."""

    ONCE = "once"
    RECURRING = "recurring"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListJobsParams:
    """Filters combine with AND; every store applies them while walking the user's jobs in
    list order (the ``(user_id, seq)`` index), so a page costs at most the user's own jobs."""

    user_id: str
    statuses: frozenset[JobStatus] = frozenset()
    """Only jobs in one of these statuses (empty: any)."""
    project_id: str | None = None
    kind: JobKind | None = None
    queue: str | None = None
    """Only jobs of this queue (exact name)."""
    search: str | None = None
    """A whole job id finds that job alone (through the id's unique index); anything else
    finds jobs whose id starts with it (ASCII letters compared lowercased: ids are
    lowercase) or whose project id contains it (exact characters). See
    ``matches_search``."""
    cursor: str | None = None
    """Opaque cursor from a previous page's ``next_cursor``."""
    limit: int = 100
    recent_runs: int = 0
    """Also return up to this many newest runs of each listed job (``JobPage.recent_runs``),
    read for the whole page at once."""


MAX_CURSOR_DIGITS = 18
"""A store's list cursor is the ``seq`` of the last job listed: at most this many digits."""


def cursor_position(cursor: str | None) -> int:
    """The ``seq`` after which a page starts (0 for the first page); ``ValidationError``
    for a cursor no store issued. A cursor is the user's own position: it says nothing
    about other users' jobs (the api seals it besides)."""
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > MAX_CURSOR_DIGITS:
        raise ValidationError(f"invalid cursor {cursor!r}", field="cursor")
    return int(cursor)


def search_id_prefix(search: str) -> str:
    """The id prefix ``search`` stands for: ids are lowercase, so ASCII letters are folded
    (only ASCII: a Unicode case rule would differ between the stores)."""
    return search.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ZEROS = "00000000-0000-0000-0000-000000000000"
_EFFS = "ffffffff-ffff-ffff-ffff-ffffffffffff"
_HEX = frozenset("0123456789abcdef")


def search_id_bounds(search: str) -> tuple[str, str] | None:
    """The lowest and highest canonical job id starting with ``search``'s id prefix, or
    None when no id can (then only the project part of a search can match): the SQL
    stores compare ids as a range, never as text cut to a length."""
    prefix = search_id_prefix(search)
    if len(prefix) > len(_ZEROS):
        return None
    for char, shape in zip(prefix, _ZEROS, strict=False):
        if (char != "-") if shape == "-" else (char not in _HEX):
            return None
    return prefix + _ZEROS[len(prefix) :], prefix + _EFFS[len(prefix) :]


def matches_search(job: Job, search: str) -> bool:
    """The search rule every store implements (the memory store uses this one)."""
    bounds = search_id_bounds(search)
    if bounds is not None and bounds[0] == bounds[1]:  # a whole id
        return job.job_id == bounds[0]
    return job.job_id.startswith(search_id_prefix(search)) or search in job.project_id


def job_listed(job: Job, params: ListJobsParams) -> bool:
    """Whether ``job`` passes the filters of ``params`` (the reference rule; the SQL stores
    say the same in SQL, and the contract tests hold all three to it)."""
    if params.statuses and job.status not in params.statuses:
        return False
    if params.project_id is not None and job.project_id != params.project_id:
        return False
    if params.kind is not None and (params.kind is JobKind.RECURRING) != job.recurring:
        return False
    if params.queue is not None and job.queue != params.queue:
        return False
    return params.search is None or matches_search(job, params.search)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunBrief:
    """What a job list shows of a run: its outcome and when."""

    run_id: str
    status: RunStatus
    scheduled_for: datetime
    attempt: int
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, run: Run) -> RunBrief:
        return cls(
            run_id=run.run_id,
            status=run.status,
            scheduled_for=run.scheduled_for,
            attempt=run.attempt,
            started_at=run.started_at,
            completed_at=run.completed_at,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobPage:
    items: list[Job]
    next_cursor: str | None
    recent_runs: dict[str, list[RunBrief]] = field(default_factory=dict)
    """Job id -> its newest runs, newest fire first and within a fire newest attempt first
    (at most ``ListJobsParams.recent_runs``; a job without runs is absent)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelResult:
    job: Job
    running_run_ids: list[str]
    """Runs a worker holds right now. Their cancel is recorded in the store (workers
    learn it at their next lease renewal); the caller may also hint the workers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeResult:
    blob_refs: list[str]
    """Blob references of what was deleted (the payload, offloaded outputs): the caller
    removes the blobs."""
    running_run_ids: list[str]
    """Runs a worker was holding: their rows are gone, so the worker's writes change
    nothing and its next lease renewal no longer holds them (it stops them)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListFiresParams:
    user_id: str
    job_id: str
    start: datetime
    """Entries whose fires reach ``start`` or later (a span is listed if it overlaps)."""
    end: datetime
    """... and begin at ``end`` or earlier."""
    limit: int = 100


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

    async def insert_jobs(
        self,
        jobs: Sequence[Job],
        *,
        if_absent: bool = False,
        max_active_per_user: int = 0,
        runs: Sequence[Run] = (),
    ) -> None:
        """Insert all jobs or none; each is due at its ``next_fire_at`` (None: never).

        ``runs``: first fires of these jobs claimed at insert (``domain.fire_now``), QUEUED
        in the same transaction; the jobs come as accepted and each fired one is stored
        as ``fire_now.stored_fired`` makes it (no ``next_fire_at``, one fire counted).
        ``ValueError`` unless each run is the first attempt of a different job among
        ``jobs`` (``fire_now.fired_job_ids``), and with ``if_absent``: a job skipped as
        present must not fire again.

        ``max_active_per_user`` > 0: if a user's jobs not in a terminal state plus their
        non-terminal jobs among ``jobs`` would exceed it, ``LimitExceededError`` and nothing
        is inserted. Counted once per user per call, inside the insert's transaction, so
        concurrent inserts (any number of processes) never take a user over it.

        A job id that exists already is a ``ConflictError`` (nothing inserted), unless
        ``if_absent``: then such jobs are skipped and the others inserted — how an
        at-least-once submission log moves entries in, idempotently on the job id.
        """
        ...

    async def active_jobs(self, user_id: str) -> int:
        """How many of the user's jobs are not in a terminal state (``limits``: the check
        of buffered ingestion, which cannot count in an insert of its own)."""
        ...

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        """The job if it exists AND belongs to ``user_id``; otherwise None."""
        ...

    async def list_jobs(self, params: ListJobsParams) -> JobPage:
        """The user's jobs, oldest first, after the cursor (ValidationError if it is bad),
        filtered as ``params`` says, with their newest runs if ``params.recent_runs``."""
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

    async def live_output(self, user_id: str, run_id: str, *, after: int = -1) -> RunLive | None:
        """The run as a live reader sees it: its job, attempt, status, exit code and error,
        and, while it is RUNNING, the newest window its worker published
        (``Dispatch.put_live_outputs``; None before the first) if that window ends past
        byte offset ``after`` (a reader that has it all reads no text again). None if
        there is no such run of this user's (a malformed id included)."""
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

    # -- job control (pause, resume, trigger, change, purge) -------------------------------

    async def pause_job(self, user_id: str, job_id: str, now: datetime) -> Job | None:
        """PAUSED: the held fire moves to ``paused_fire_at`` and ``next_fire_at`` is None.
        QUEUED runs of fires not yet due (``available_at > now``, not manual) end SKIPPED
        (``paused``), recorded in the ledger; a run already due or running goes on (a
        paused job's run that ends leaves it PAUSED). Terminal or already paused jobs are
        returned unchanged. None if not found."""
        ...

    async def resume_job(
        self, user_id: str, job_id: str, now: datetime, *, catch_up: bool
    ) -> Job | None:
        """PAUSED -> PENDING, next fire from ``claims.plan_resume`` (its skip spans are
        recorded). Other states: returned unchanged. None if not found."""
        ...

    async def trigger_job(
        self, user_id: str, job_id: str, now: datetime, *, max_fires_per_minute: int = 0
    ) -> Run | None:
        """A manual fire now: a QUEUED run (``manual``, ``scheduled_for == available_at ==
        now``, attempt 1). It goes through the overlap policy when it starts, like any
        fire; it does not count towards ``max_fires`` and does not move the schedule.
        ``ConflictError`` if the job is terminal or a one-shot (one fire only); None if
        not found. ``max_fires_per_minute`` > 0: ``LimitExceededError`` (nothing made) if
        the user has had that many fires in the last ``limits.FIRE_WINDOW`` — counted
        like ``Dispatch.claim_due`` counts, in the same transaction."""
        ...

    async def update_job(
        self, user_id: str, job_id: str, changes: JobChanges, now: datetime
    ) -> tuple[Job, str | None] | None:
        """Apply ``changes`` from the next fire; returns the job and the payload reference
        it replaced (the caller deletes that blob), or None if not found. A changed
        schedule, timezone or ``start_at`` recomputes the next fire from ``now``
        (``policies.first_fire_at``; for a PAUSED job, ``paused_fire_at``).
        ``ConflictError`` for a terminal job; ``ValidationError`` for ``next_fire_at`` on
        a recurring job or a schedule on a one-shot job."""
        ...

    async def purge_job(self, user_id: str, job_id: str) -> PurgeResult | None:
        """Delete the job with its runs, outputs, skips and idempotency key. None if not found."""
        ...

    async def list_fires(self, params: ListFiresParams) -> list[Fire] | None:
        """The job's fire ledger in ``[start, end]``, oldest first, at most ``limit``
        entries: each fire with a run (its latest attempt) and each skipped span, never two
        entries for one fire (a run that ended SKIPPED is listed once, as its skip).
        None if the job is not the user's."""
        ...

    async def skip_counts(self) -> dict[SkipReason, int]:
        """Skipped nominal fires recorded so far, per reason, over all jobs (metrics; a span
        too long to count adds ``fire_spans.SPAN_COUNT_CAP``)."""
        ...

    # -- idempotency keys ----------------------------------------------------------------

    async def job_by_idempotency_key(self, user_id: str, key: str) -> Job | None:
        """The user's job submitted under ``key``, while the key is kept."""
        ...

    async def forget_idempotency_keys(self, before: datetime, limit: int = 1000) -> int:
        """Retention: clear the keys of jobs created before ``before`` (the key may then be
        used again). Returns how many."""
        ...

    async def existing_job_ids(self, job_ids: Sequence[str]) -> set[str]:
        """Those of ``job_ids`` that are jobs in the store, whoever owns them (the leader's
        orphan-blob sweep; never user-facing). Strings that are not job ids are absent."""
        ...

    async def payload_refs_of(self, job_ids: Sequence[str]) -> set[str]:
        """The payload references (``Job.payload_ref``) of those of ``job_ids`` that exist,
        whoever owns them (the leader's orphan sweep of ``payloads/``; never user-facing).
        Strings that are not job ids are ignored."""
        ...

    async def output_refs_of(self, run_ids: Sequence[str]) -> set[str]:
        """The output references (``Run.output_ref``) recorded on those of ``run_ids`` that
        exist, whoever owns them (the leader's orphan sweep of ``outputs/``; never
        user-facing). Strings that are not run ids are ignored."""
        ...
