"""The Dispatch port: due fires become runs, runs are leased to workers and ended.

Adapters: the store's own run table (``SqliteStore``, ``PostgresStore``,
``MemoryStore`` implement it next to ``JobStore``); an external queue (Redis
Streams, SQS) may carry run ids later, with the store still the truth.

A run's life in this port (``docs/state_machine.md`` draws it)::

    claim_due ──> QUEUED ──claim_runs──> RUNNING, leased, not started
                                            │ mark_started
                                            v
                                   RUNNING, started ──complete_runs──> an outcome
                    lost (reap_lost, release_runs): not started -> QUEUED again (no attempt
                    used); started -> INTERRUPTED + attempt + 1, or DEAD past the budget

Contract, for every adapter:

* **Atomic and compare-and-set.** Every write that a stale actor could make
  applies only if the run is still RUNNING under the caller's lease (owner and,
  for outcomes, attempt) and reports whether it applied (DESIGN §5.4). A
  worker declared dead can still call in; its writes change nothing.
* **Claims never overlap.** Concurrent ``claim_due`` calls never create two runs
  for one fire; concurrent ``claim_runs`` never lease one run twice. The unique
  key (job, scheduled_for, attempt) and "at most one terminal outcome per
  fire" hold whatever callers do.
* **Fencing without shared transactions.** The leader records which picker owns
  each shard, under the assignment epoch its coordination issued, with
  ``fence_shards``; a fenced ``claim_due`` names its (owner, epoch) and claims
  nothing unless the store's record matches. The store reads no other port's
  tables, so any Coordination (PostgreSQL, etcd, in-memory) fences any store.
* **Started is recorded before a run executes.** ``claim_runs`` leases; only
  ``mark_started`` says a run may have begun, and the worker executes only the
  runs it returned. So a run lost while not started provably never executed
  and goes back to the queue without using an attempt.
* **Liveness from membership, safety from leases.** ``reap_lost`` ends the runs of
  workers that are not in ``live_workers`` at once, and any run whose lease
  expired; a live but stuck worker is stopped by its lease.
* Instants are the caller's (``now`` parameters); adapters never read a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from chronoq.domain.jobs import ClaimedRun, Run, RunOutcome
from chronoq.domain.live_output import LiveOutput
from chronoq.domain.queues import NO_LIMITS, ClaimLimits
from chronoq.domain.retry import DEFAULT_MAX_INTERRUPTIONS
from chronoq.errors import ValidationError


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimDueParams:
    shards: Sequence[int] | None
    """The shards this picker serves; ``None`` means all."""
    now: datetime
    horizon: datetime
    """Claim fires with ``next_fire_at <= horizon`` (a short look-ahead past ``now``)."""
    limit: int = 1000
    owner: str | None = None
    """Fencing (distributed mode): claim only from shards that the newest ``fence_shards``
    gave to ``owner``, and only if that record's epoch is ``epoch``. None: unfenced
    (embedded mode, one picker owns everything)."""
    epoch: int | None = None
    max_fires_per_minute: int = 0
    """Per-user fires limit (``domain.limits``; 0: none): a user's due fires beyond it wait
    (not advanced, not skipped) while other users' due fires are claimed."""
    on_deferred: Callable[[int], None] | None = None
    """Told, after a claim that left due jobs waiting for their user's budget, how many
    it saw (metrics; 0 when it only left out users known to be out of budget); may be
    called on a store's own thread."""

    def __post_init__(self) -> None:
        if (self.owner is None) != (self.epoch is None):
            raise ValidationError("a fenced claim names both owner and epoch", field="epoch")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRunsParams:
    worker_id: str
    now: datetime
    horizon: datetime
    """Claim QUEUED runs with ``available_at <= horizon``; they start at ``available_at``."""
    lease_until: datetime
    limit: int = 100
    queues: frozenset[str] | None = None
    """Claim only runs of these queues (``domain.queues``); None: every queue."""
    limits: ClaimLimits = NO_LIMITS
    """Concurrency limits, counted over every RUNNING run in the store inside the claim's
    transaction (so they hold across workers): a run over a limit stays QUEUED."""

    def __post_init__(self) -> None:
        if self.queues is not None and not self.queues:
            raise ValidationError("a claim names at least one queue (None: all)", field="queues")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReapParams:
    now: datetime
    retry_at: datetime
    """When the next attempt of an INTERRUPTED run becomes available."""
    max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS
    live_workers: frozenset[str] | None = None
    """Workers known to be alive (Coordination membership). A RUNNING run whose lease
    owner is not among them is lost now, whatever its lease says. None: membership is
    unknown; only expired leases count."""
    expire_all: bool = False
    """Treat every RUNNING run as lost (embedded start-up: the previous process is gone)."""
    limit: int = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseParams:
    """A worker hands its unfinished runs back (graceful stop)."""

    worker_id: str
    run_ids: Sequence[str]
    now: datetime
    max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseRenewal:
    held: list[str]
    """The runs whose lease was extended: still this worker's, in the order asked."""
    cancel: list[str]
    """Those of ``held`` whose cancel was requested (their job was cancelled): kill them."""


class Dispatch(Protocol):
    """Runs from due fires to outcomes. See the module docstring for the shared contract."""

    async def start(self) -> None:
        """Connect; safe to call twice (one adapter object may serve two ports)."""
        ...

    async def close(self) -> None:
        """Close; safe to call twice."""
        ...

    # -- pickers ---------------------------------------------------------------------------

    async def fence_shards(self, epoch: int, owners: Mapping[int, str]) -> bool:
        """Record the shard owners of assignment ``epoch`` (shards not in ``owners`` have
        none). Applies only if ``epoch`` is greater than the epoch recorded so far, so a
        deposed leader's late write changes nothing; returns whether it applied. Waits
        for fenced claims in progress, so none straddles two epochs."""
        ...

    async def claim_due(self, params: ClaimDueParams) -> list[Run]:
        """Claim due fires, oldest first: for each due job, apply ``claims.plan_claim`` —
        create its QUEUED runs (attempt 1, available at the fire plus its jitter), record
        its skipped spans in the fire ledger, and set its next fire and ``fire_count`` —
        in one transaction (DESIGN §5.3). A recurring job whose schedule ended with no run
        of its own going becomes COMPLETED. Returns the runs created (not the skips).
        PAUSED jobs have no next fire, so they are never due. Fenced (``owner`` set) and
        not matching the newest ``fence_shards``: claims nothing.

        ``max_fires_per_minute`` > 0: each user's fires (attempt-1 runs, manual ones too)
        triggered in the last ``limits.FIRE_WINDOW`` count, across every picker; a job is
        claimed only while its user has budget left, the others stay due, untouched, and
        are claimed later in order. The oldest due fires of users with budget are claimed
        however many fires of held-back users are due before them (``limits.FireBudget``,
        ``limits.CLAIM_ROUNDS``). A fire held back is judged late only for the time
        before its user was held back (``limits.Deferrals``)."""
        ...

    async def next_due_at(self, shards: Sequence[int] | None) -> datetime | None:
        """The earliest ``next_fire_at`` in these shards, for the picker's sleep."""
        ...

    # -- workers ---------------------------------------------------------------------------

    async def claim_runs(self, params: ClaimRunsParams) -> list[ClaimedRun]:
        """Lease QUEUED runs available by the horizon, of ``params.queues`` (None: any),
        highest ``priority`` first, then earliest ``available_at``: each becomes RUNNING
        with owner and lease, NOT started, and its job RUNNING. With ``params.limits``,
        a run whose queue or user already has that many RUNNING runs (counting those
        leased by this claim) is passed over and stays QUEUED; the claim goes on with the
        runs after it, so a full queue or user never holds the others back. Two claims
        at once never exceed a limit together."""
        ...

    async def next_available_at(self) -> datetime | None:
        """The earliest ``available_at`` of QUEUED runs, for the workers' sleep."""
        ...

    async def mark_started(self, worker_id: str, run_ids: Sequence[str], at: datetime) -> list[str]:
        """Record that these runs start executing ``at``; only runs still RUNNING under
        this worker's lease and not started yet. Returns those, in the order asked: the
        worker executes only them. Durable before it returns.

        Each run first passes ``starts.plan_start`` (oldest fire first, each seeing the
        decisions before it: of two runs of one job in one batch, the older fire is "the
        previous run"): a run past its start deadline, or refused by its job's
        overlap policy, ends SKIPPED (recorded in the fire ledger); a buffered one goes
        back to QUEUED, available when the job's running run ends (at the latest when that
        run's lease expires, when it is judged again), and ``cancel_previous`` also
        requests the running run's cancel (``extend_leases`` reports it). None of those
        is returned. For a gated job (``starts.gated``) the store tracks which run is
        running and which is buffered, and releases the buffered one (available now) in
        the transaction that ends the running one."""
        ...

    async def extend_leases(
        self, worker_id: str, run_ids: Sequence[str], lease_until: datetime
    ) -> LeaseRenewal:
        """Set the lease of the worker's runs to ``lease_until``; report which it still holds and
        which of those were cancelled."""
        ...

    async def put_live_outputs(self, worker_id: str, outputs: Sequence[LiveOutput]) -> list[bool]:
        """Keep each output as the newest window of its running run (replacing the previous
        one), compare-and-set on (RUNNING, ``worker_id``, attempt) like outcomes: a stale
        worker's window changes nothing. One bool per output, in order. The store keeps
        at most ``LIVE_OUTPUT_BYTES`` per run (``LiveOutput`` is already bounded) and drops
        the window in the transaction that moves the run out of RUNNING (an outcome, a lost
        or handed-back run) and with the run. ``JobStore.live_output`` reads it."""
        ...

    async def complete_runs(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        """Record outcomes with compare-and-set on (RUNNING, worker, attempt), in order; a
        second outcome for one run in a batch is stale. A RETRY_SCHEDULED outcome also
        creates attempt + 1 (QUEUED at ``retry_at``, same fire, same ``interruptions``),
        unless the job was cancelled: then the run ends CANCELLED. The job moves on
        (``job_status_after_run``), never out of a terminal state. One bool per outcome."""
        ...

    async def release_runs(self, params: ReleaseParams) -> int:
        """Hand unfinished runs of ``worker_id`` back, by the lost-run rule
        (``domain.states.lost_run``, reason ``LOST_AT_SHUTDOWN``). Returns how many."""
        ...

    async def reap_lost(self, params: ReapParams) -> int:
        """End runs whose worker is gone (not in ``live_workers``, lease expired, or
        ``expire_all``), by ``domain.states.lost_run``: not started -> QUEUED again, same
        attempt; started -> INTERRUPTED + attempt + 1 (``interruptions`` + 1, available at
        ``retry_at``), or DEAD past ``max_interruptions``; cancelled -> CANCELLED.
        Returns how many runs were ended or requeued (at most ``limit``)."""
        ...


# -- an external queue in front of the store (``--dispatch redis://|sqs://``) ----------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxParams:
    """Which QUEUED runs still need a message (``Outbox.unpublished_runs``)."""

    horizon: datetime
    """Only runs with ``available_at <= horizon`` (a message is sent shortly before)."""
    settled_before: datetime
    """Never published: only runs triggered before this instant (younger ones are being
    published right now by the picker that created them)."""
    republish_before: datetime | None = None
    """Published before this instant and still QUEUED: their message is presumed lost
    (an emptied broker, a dead-letter queue), so they are due again. None: never."""
    queues: Sequence[str] | None = None
    """Only runs of these queues (an emptied broker queue); None: every queue."""
    limit: int = 1000


@runtime_checkable
class Outbox(Protocol):
    """The store's side of an external run queue: the run table IS the outbox.

    A QUEUED run carries whether (and when) a message for it was sent. Entering QUEUED
    (a new run, a retry's next attempt, a run requeued by ``reap_lost``/``release_runs``)
    makes a run unpublished, so whatever happens between a store commit and a send, the
    next relay pass finds the run and sends it. Implemented by ``PostgresStore`` and
    ``MemoryStore``; ``chronoq.adapters.queue`` uses it.
    """

    async def unpublished_runs(self, params: OutboxParams) -> list[tuple[str, str]]:
        """(run id, queue) of QUEUED runs that need a message (see ``OutboxParams``),
        earliest ``available_at`` first: the queue says which broker queue to send to."""
        ...

    async def mark_published(self, run_ids: Sequence[str], at: datetime) -> int:
        """Record that a message for each of these runs was sent ``at``; only runs still
        QUEUED. Never waits for a run another transaction holds (it is skipped: one more
        message at worst). Returns how many were marked."""
        ...

    async def queued_runs(self, run_ids: Sequence[str]) -> dict[str, datetime]:
        """Of these runs (messages name them), those still QUEUED, with their
        ``available_at``; a run RUNNING, ended, unknown or a malformed id is absent (its
        message is spent). Only reads: workers lease with ``Dispatch.claim_runs``."""
        ...

    async def queued_queues(self, limit: int) -> list[str]:
        """The distinct queues of QUEUED runs, in name order, at most ``limit``: which
        broker queues a worker of every queue reads."""
        ...


@runtime_checkable
class Relay(Protocol):
    """A Dispatch with an outbox to send (a queued dispatch); the leader calls ``relay``."""

    async def relay(self, now: datetime) -> int:
        """Send a message for every QUEUED run that needs one (never sent, requeued, or
        sent long ago / into a broker that came back empty). Returns how many were sent."""
        ...
