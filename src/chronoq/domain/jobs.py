"""Jobs and runs as values, and the pure rules that build them.

A *fire* is one due time of a job, identified by ``(job_id, scheduled_for)``;
each attempt at a fire is a *run*. These classes carry no behaviour that needs
I/O; the stores persist them and the services move them through the states of
``chronoq.domain.states``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from chronoq.domain.policies import DEFAULT_POLICIES, Policies, SkipReason
from chronoq.domain.queues import DEFAULT_QUEUE
from chronoq.domain.states import OUTCOME_STATUSES, JobStatus, RunStatus
from chronoq.domain.text import clean_text
from chronoq.errors import ValidationError

OFFLOAD_THRESHOLD = 1024
"""Payloads longer than this many bytes go to the blob store (the seed's 1 KiB)."""

BLOB_REF_PREFIX = "blob:"


def shard_of(job_id: str, shard_count: int) -> int:
    """The shard a job lives in: a stable hash of its id modulo the shard count."""
    digest = hashlib.blake2b(job_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard_count


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """A validated submission, before it has an id."""

    user_id: str
    project_id: str
    payload: str
    cron_schedule: str | None = None
    timezone: str | None = None
    next_fire_at: datetime | None = None
    max_retries: int = 0
    timeout_seconds: float | None = None
    policies: Policies = DEFAULT_POLICIES
    idempotency_key: str | None = None
    """The caller's ``Idempotency-Key``: unique per user while kept (``request_hash`` is
    the submission's fingerprint, to tell a replay from another body under the same key)."""
    request_hash: str | None = None
    queue: str = DEFAULT_QUEUE
    """The queue its runs go to (``domain.queues``): workers claim from chosen queues."""
    priority: int = 0
    """Higher dispatches first among claimable runs (-1000..1000)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A job as stored. ``payload`` is inline, or ``None`` with ``payload_ref`` set."""

    job_id: str
    user_id: str
    project_id: str
    payload: str | None
    payload_ref: str | None
    payload_size: int
    cron_schedule: str | None
    timezone: str | None
    next_fire_at: datetime | None
    shard_id: int
    status: JobStatus
    max_retries: int
    timeout_seconds: float | None
    created_at: datetime
    updated_at: datetime
    policies: Policies = DEFAULT_POLICIES
    fire_count: int = 0
    """Nominal fires claimed so far (runs and skips; ``Policies.max_fires``)."""
    paused_fire_at: datetime | None = None
    """While PAUSED: the fire it holds (its ``next_fire_at`` is None meanwhile)."""
    idempotency_key: str | None = None
    request_hash: str | None = None
    queue: str = DEFAULT_QUEUE
    """Copied into each run when the run is created (a later change moves later runs)."""
    priority: int = 0

    @property
    def recurring(self) -> bool:
        return self.cron_schedule is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One attempt at one fire of a job."""

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
    lease_until: datetime | None = None
    interruptions: int = 0
    """Earlier attempts of this fire that were INTERRUPTED (not the job's failures)."""
    output_truncated: bool = False
    """``output`` is only the start of the stored output (run lists cut it at
    ``LIST_OUTPUT_CHARS``); ``JobStore.read_output`` has the rest."""
    output_ref: str | None = None
    """The whole output is in the blob store (``BLOB_REF_PREFIX`` + ``outputs/<run_id>-<attempt>``);
    ``output`` is then only its head (``OUTPUT_HEAD_CHARS``) and the run lists as truncated."""
    manual: bool = False
    """Created by ``trigger`` (a manual fire at ``scheduled_for``), not by the schedule."""
    queue: str = DEFAULT_QUEUE
    """Its job's queue when the run was created (``domain.queues``)."""
    priority: int = 0
    """Its job's priority when the run was created."""


LIST_OUTPUT_CHARS = 2048
"""Characters of each run's output that a run list carries: a page of 1,000 runs stays
bounded (≤ 2,048 characters each, up to 6 JSON bytes per control character) however
large outputs are. The whole output is read in slices (``JobStore.read_output``)."""


OUTPUT_HEAD_CHARS = LIST_OUTPUT_CHARS + 1
"""Characters of an offloaded output kept inline: enough for a list to show and mark cut."""

OUTPUTS = "outputs/"
"""Where workers put run outputs above ``output_offload_bytes``: ``outputs/<run_id>-<attempt>``."""


def output_key(run_id: str, attempt: int) -> str:
    """The blob key of an offloaded output of this attempt."""
    return f"{OUTPUTS}{run_id}-{attempt}"


def output_cut(run: Run, chars: int) -> Run:
    """``run`` with its output cut to ``chars`` characters and marked so, if longer (or
    offloaded). Stores fetch ``chars + 1`` characters at most, which is enough to know."""
    if run.output_ref is not None:
        return replace(run, output=(run.output or "")[:chars], output_truncated=True)
    if run.output is None or len(run.output) <= chars:
        return run
    return replace(run, output=run.output[:chars], output_truncated=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedRun:
    """A run a worker holds under a lease, with what it needs to execute it."""

    run_id: str
    job_id: str
    attempt: int
    scheduled_for: datetime
    available_at: datetime
    payload: str | None
    payload_ref: str | None
    timeout_seconds: float | None
    max_retries: int
    recurring: bool
    interruptions: int = 0
    """Earlier attempts of this fire that were INTERRUPTED; ``attempts_left`` discounts them."""
    start_check: bool = False
    """The store must judge this run's start (``starts.plan_start``): its job is gated
    (an overlap policy other than ``allow``) or has a start deadline. Such a run is always
    recorded as started before it executes, even by an inline no-op executor."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """What a worker reports when an attempt ends; applied with compare-and-set."""

    run_id: str
    worker_id: str
    attempt: int
    status: RunStatus
    started_at: datetime
    completed_at: datetime
    output: str
    exit_code: int | None
    error_message: str | None
    retry_at: datetime | None = None
    """When ``status`` is RETRY_SCHEDULED: when attempt + 1 becomes available."""
    output_ref: str | None = None
    """Set when the whole output was put to the blob store: ``output`` is then its head."""

    def __post_init__(self) -> None:
        # Untrusted text: made storable the same way for every store (domain.text).
        object.__setattr__(self, "output", clean_text(self.output))
        if self.error_message is not None:
            object.__setattr__(self, "error_message", clean_text(self.error_message))


def check_outcomes(outcomes: Iterable[RunOutcome]) -> None:
    """``ValidationError`` for a status no worker may report (``OUTCOME_STATUSES``): every
    store's ``complete_runs`` checks its whole batch with this before writing anything."""
    for outcome in outcomes:
        if outcome.status not in OUTCOME_STATUSES:
            raise ValidationError(
                f"a run cannot end {outcome.status.value}: a worker reports one of "
                + ", ".join(sorted(OUTCOME_STATUSES)),
                field="status",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Fire:
    """One entry of a job's fire ledger: a nominal fire (or a span of skipped ones) and its
    one outcome. ``GET /v1/jobs/{id}/fires`` lists them (``JobStore.list_fires``)."""

    scheduled_for: datetime
    """The nominal fire (a manual fire: the instant it was triggered)."""
    last_scheduled_for: datetime
    """Equal to ``scheduled_for``, except for a span of skipped fires: its last fire."""
    count: int | None
    """Nominal fires this entry covers: 1 for a run; a span's count (None: too many to count)."""
    outcome: str
    """The run's status (its latest attempt's; QUEUED or RUNNING while not ended), or SKIPPED."""
    reason: SkipReason | None
    """Why it was skipped (SKIPPED only)."""
    run_id: str | None
    """The latest attempt's run (None for a fire skipped before it had one)."""
    attempts: int
    manual: bool
    recorded_at: datetime
    """When this outcome was last written."""


CHANGEABLE_FIELDS = frozenset(
    {
        "cron_schedule",
        "timezone",
        "next_fire_at",
        "payload",
        "max_retries",
        "timeout_seconds",
        "policies",
        "queue",
        "priority",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobChanges:
    """A PATCH, validated: the fields named in ``fields`` take the values given here (None
    included: ``timeout_seconds=None`` removes the timeout). They apply from the next
    fire; a running run keeps what it started with."""

    fields: frozenset[str]
    """Which of ``CHANGEABLE_FIELDS`` change."""
    cron_schedule: str | None = None
    timezone: str | None = None
    next_fire_at: datetime | None = None
    """A one-shot job's new time (a recurring job's next fire follows its schedule)."""
    payload: str | None = None
    payload_ref: str | None = None
    payload_size: int = 0
    max_retries: int = 0
    timeout_seconds: float | None = None
    policies: Policies = DEFAULT_POLICIES
    """The whole set of policies after the change (the api merges a partial one)."""
    queue: str = DEFAULT_QUEUE
    priority: int = 0
