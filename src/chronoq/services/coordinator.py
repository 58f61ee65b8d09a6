"""The coordinator role: leader election, shard assignment and fencing, the reaper.

Every coordinator process runs the same ``Loop``s (see the state model in
``chronoq.ports.coordination``); only the leader acts.

**lead** (every ``leader_ttl / 3``) takes or renews the leader lease, then
spreads the shards over the live pickers (``spread_shards``). When the live
set changes, and at the start of every term, it writes a new assignment with
``Coordination.assign_shards`` (which returns a new assignment epoch), records
the same owners under that epoch in the store with ``Dispatch.fence_shards``,
and hints ``assign`` so pickers re-read at once.

**reap** (every ``reap_every``, 1 s; embedded: every half lease) hands the runs of
lost workers back with ``Dispatch.reap_lost``: runs whose lease expired and, once
membership is trustworthy, runs of workers that are not live members — so a dead
worker's runs return within ``member_ttl`` plus one pass. Membership is
trustworthy when this node has been leader, and every coordination call it made
has succeeded, for ``member_ttl`` plus one heartbeat interval: after an outage,
live workers must have had the chance to heartbeat before silence counts as death.
Until then ``live_workers`` is None (leases only), and reaping by leases alone
waits half a lease into a term, so workers cut off by an outage can extend their
leases and record their outcomes first.

**purge** (every ``purge_every``) applies retention.

**orphans** (every ``orphan_age / 4``, at most 10 min) deletes offloaded payloads older
than ``orphan_age`` whose job row never came (``services.orphans``).

**relay** (only with a run queue in front of the store, ``--dispatch``; every
``relay_every`` and at each RUNS hint) sends the store's outbox: every QUEUED run
that has no message in the queue yet (``ports.dispatch.Relay``).

What is fenced, exactly: ``assign_shards`` applies only while this node holds the
leader lease at the epoch it names, and ``fence_shards`` only if its assignment
epoch is newer than the one the store recorded — a deposed leader that does not
know yet changes neither, and demotes itself when the store refuses its fence.
Reaping and retention are NOT fenced: the trust window (the last renewal plus
``leader_ttl`` minus a margin, by the monotonic clock; a failed renewal demotes at
once) keeps them to one node in practice, and both are safe twice anyway — every
reap is a compare-and-set on a RUNNING run, and retention deletes only finished
rows.

Embedded mode has one node (the data-dir lock guarantees it): it is always the
leader, there are no shards to assign (its picker owns them all) and no
membership, and at start it recovers runs the previous process left RUNNING
(``recover_orphans``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from chronoq.domain.clock import Clock
from chronoq.domain.jobs import BLOB_REF_PREFIX
from chronoq.domain.retry import DEFAULT_MAX_INTERRUPTIONS, RetryPolicy
from chronoq.observability.metrics import Metrics
from chronoq.ports.blob import BlobStore
from chronoq.ports.coordination import Coordination, lease_owners, spread_shards
from chronoq.ports.dispatch import Dispatch, ReapParams, Relay
from chronoq.ports.jobs import JobStore
from chronoq.ports.notify import ASSIGN, RUNS, Notifier
from chronoq.services.base import Backoff, Loop, log
from chronoq.services.orphans import OrphanSweep

T = TypeVar("T")

_TRUST_MARGIN = 0.25
"""Share of the ttl a leader gives up at the end of its lease, against clock drift."""
_REAP_BATCH = 1000


_FORGET_BATCH = 1000
"""``forget_idempotency_keys``' default limit: a full batch means there may be more."""
_FORGET_BATCHES = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinatorConfig:
    node_id: str
    lease_seconds: float
    retry: RetryPolicy
    recover_orphans: bool
    distributed: bool = False
    leader_ttl: float = 3.0
    member_ttl: float = 3.0
    shard_count: int = 256
    retention_hours: float = 168.0
    """Finished runs and jobs older than this are deleted (0 = keep forever)."""
    idempotency_retention: float = 86400.0
    """Seconds idempotency keys are kept, then forgotten by retention (0 = forever)."""
    orphan_age: float = 3600.0
    """Payload objects without a job are deleted once older than this, seconds (0 = never)."""
    purge_every: float = 600.0
    max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS
    """Passed to ``reap_lost``: how often a fire may be cut off before it is DEAD."""
    reap_every: float = 1.0
    """Seconds between reaper passes in distributed mode (embedded: half a lease)."""
    relay_every: float = 0.5
    """Seconds between relay passes (only with a ``relay``: a run queue to fill)."""

    @property
    def membership_grace(self) -> float:
        """How long the leader must have been connected before it trusts membership:
        a member ttl plus one heartbeat interval."""
        return self.member_ttl + self.member_ttl / 3


class Coordinator:
    name = "coordinator"

    def __init__(
        self,
        dispatch: Dispatch,
        jobs: JobStore,
        blob: BlobStore,
        notifier: Notifier,
        coordination: Coordination,
        clock: Clock,
        metrics: Metrics,
        config: CoordinatorConfig,
        *,
        relay: Relay | None = None,
        live_workers: Callable[[], frozenset[str]] | None = None,
    ) -> None:
        """``jobs`` serves retention only; everything else goes through ``dispatch``.
        ``relay``: the outbox of a run queue in front of the store (``--dispatch``).
        ``live_workers`` (embedded, with worker processes): the lease owners that are
        alive, known for sure by the process that started them; the runs of any other
        owner are handed back at the next reap, every ``reap_every``."""
        self._relay = relay
        self._live_workers = live_workers
        self._dispatch = dispatch
        self._jobs = jobs
        self._blob = blob
        self._orphans = OrphanSweep(jobs, blob, clock, min_age=config.orphan_age)
        self._notifier = notifier
        self._coordination = coordination
        self._clock = clock
        self._metrics = metrics
        self._config = config
        self._epoch: int | None = None
        """Our leader epoch while we lead (distributed)."""
        self._trusted_until = 0.0
        self._leader_since: float | None = None
        self._connected_since: float | None = None
        """Since when every coordination call of ours has succeeded (monotonic)."""
        self._lease_reap_from = 0.0
        self._assigned: dict[int, str] | None = None
        self._assignment_epoch: int | None = None
        self._fenced_epoch: int | None = None
        self._loops: list[Loop] = []
        self._started = False

    @property
    def is_leader(self) -> bool:
        return not self._config.distributed or self._clock.monotonic() < self._trusted_until

    @property
    def epoch(self) -> int | None:
        """The leader epoch of our current term (None: not leading; embedded: None)."""
        return self._epoch if self.is_leader else None

    @property
    def membership_trusted(self) -> bool:
        """Whether ``reap_lost`` may be told the live workers now (see the module doc)."""
        if not self._config.distributed or not self.is_leader:
            return False
        if self._leader_since is None or self._connected_since is None:
            return False
        since = max(self._leader_since, self._connected_since)
        return self._clock.monotonic() - since >= self._config.membership_grace

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        c = self._config
        if c.recover_orphans:
            count = await self._reap(live_workers=None, expire_all=True)
            if count:
                log.warning("coordinator: recovered %d runs left running by a dead process", count)
        if c.distributed:
            # Renewals must never wait longer than a renewal interval, even after failures.
            lead_backoff = Backoff(first=min(0.05, c.leader_ttl / 3), cap=c.leader_ttl / 3)
            self._loops.append(Loop("coordinator-lead", self._lead, self._clock,
                                    backoff=lead_backoff))  # fmt: skip
        self._loops.append(Loop("coordinator-reap", self._reap_tick, self._clock))
        if self._relay is not None:
            relay = Loop("coordinator-relay", self._relay_tick, self._clock)
            self._notifier.subscribe(RUNS, relay.wakeup.set)  # reaped or new runs to send
            self._loops.append(relay)
        if c.orphan_age > 0:
            self._loops.append(Loop("coordinator-orphans", self._orphan_tick, self._clock))
        purge = Loop("coordinator-purge", self._purge_tick, self._clock)
        self._loops.append(purge)
        for loop in self._loops[:-1]:
            loop.start()
        purge.start(after=min(c.purge_every, 60.0))

    async def stop(self) -> None:
        loops, self._loops = self._loops, []
        for loop in loops:
            await loop.stop()
        self._started = False
        if self._config.distributed and self._epoch is not None:
            try:
                await self._coordination.resign(self._config.node_id)
            except Exception:
                log.warning("coordinator: could not resign; the lease will expire")
            self._demote(None)

    # -- leadership (distributed) --------------------------------------------------------

    async def _lead(self) -> float:
        await self._campaign()
        if self.is_leader:
            await self._rebalance()
        return self._config.leader_ttl / 3

    async def _campaign(self) -> None:
        c = self._config
        asked = self._clock.monotonic()
        try:
            lease = await self._coordinated(self._coordination.try_lead(c.node_id, c.leader_ttl))
        except Exception:
            self._demote("the leader lease could not be renewed")
            raise
        if lease is None:
            self._demote("another node holds the leader lease")
            return
        if lease.epoch != self._epoch or self._leader_since is None:
            log.info("coordinator %s: leader at epoch %d", c.node_id, lease.epoch)
            self._epoch = lease.epoch
            self._leader_since = asked
            self._assigned = self._assignment_epoch = self._fenced_epoch = None  # re-assign
            # A new term often follows an outage of the store, during which live workers
            # could not extend their leases; give them a heartbeat or two to do so (and to
            # record finished runs) before an expired lease alone counts as a dead worker.
            self._lease_reap_from = asked + c.lease_seconds / 2
        self._trusted_until = asked + c.leader_ttl * (1 - _TRUST_MARGIN)

    def _demote(self, why: str | None) -> None:
        if self._epoch is not None and why is not None:
            log.warning("coordinator %s: not leader any more (epoch %d): %s",
                        self._config.node_id, self._epoch, why)  # fmt: skip
        self._epoch, self._trusted_until, self._leader_since = None, 0.0, None
        self._assigned = self._assignment_epoch = self._fenced_epoch = None

    async def _coordinated(self, call: Awaitable[T]) -> T:
        """Await a coordination call, keeping track of how long they have all succeeded."""
        asked = self._clock.monotonic()
        try:
            result = await call
        except Exception:
            self._connected_since = None
            raise
        if self._connected_since is None:
            self._connected_since = asked
        return result

    async def _rebalance(self) -> None:
        """Assign the shards over the live pickers when that changed (or the term is new),
        then make sure the store's fence records the assignment in force."""
        c = self._config
        pickers = await self._coordinated(self._coordination.members("picker", ttl=c.member_ttl))
        wanted = spread_shards(c.shard_count, [p.member_id for p in pickers])
        if wanted != self._assigned or self._assignment_epoch is None:
            if self._epoch is None or not self.is_leader:
                return
            epoch = await self._coordinated(
                self._coordination.assign_shards(c.node_id, self._epoch, wanted)
            )
            if epoch is None:
                self._demote("fenced out while assigning shards")
                return
            self._assigned, self._assignment_epoch = wanted, epoch
            log.info("coordinator: %d shards over %d pickers at assignment epoch %d",
                     len(wanted), len(pickers), epoch)  # fmt: skip
        if self._fenced_epoch != self._assignment_epoch:
            await self._fence()

    async def _fence(self) -> None:
        epoch, owners = self._assignment_epoch, self._assigned
        assert epoch is not None and owners is not None
        if not await self._dispatch.fence_shards(epoch, owners):
            self._demote(f"the store holds a newer shard assignment than epoch {epoch}")
            return
        self._fenced_epoch = epoch
        self._notifier.publish(ASSIGN, str(epoch))  # pickers re-read now, not at refresh

    # -- the reaper ----------------------------------------------------------------------

    async def _reap_tick(self) -> float:
        c = self._config
        if not c.distributed:
            if self._live_workers is not None:
                await self._reap(live_workers=self._live_workers())
                return c.reap_every
            await self._reap(live_workers=None)
            return max(c.lease_seconds / 2, 0.5)
        if not self.is_leader:
            return c.reap_every
        live: frozenset[str] | None = None
        if self.membership_trusted:
            workers = await self._coordinated(
                self._coordination.members("worker", ttl=c.member_ttl)
            )
            live = lease_owners(workers)
        elif self._clock.monotonic() < self._lease_reap_from:
            return c.reap_every  # leases alone: not yet in this term
        if self.is_leader:
            await self._reap(live_workers=live)
        return c.reap_every

    async def _reap(self, *, live_workers: frozenset[str] | None, expire_all: bool = False) -> int:
        now = self._clock.now()
        params = ReapParams(
            now=now,
            retry_at=now + timedelta(seconds=self._config.retry.delay(1)),
            max_interruptions=self._config.max_interruptions,
            live_workers=live_workers,
            expire_all=expire_all,
            limit=_REAP_BATCH,
        )
        total = 0
        while True:
            count = await self._dispatch.reap_lost(params)
            total += count
            if count < _REAP_BATCH:
                break
        if total:
            log.warning("coordinator: %d runs of lost workers handed back", total)
            self._metrics.runs_reaped.inc(total)
            self._notifier.publish(RUNS)
        return total

    # -- the relay -----------------------------------------------------------------------

    async def _relay_tick(self) -> float:
        """Leader only (one sender keeps duplicate messages rare; two would be harmless)."""
        if self._relay is not None and self.is_leader:
            await self._relay.relay(self._clock.now())
        return self._config.relay_every

    # -- retention -----------------------------------------------------------------------

    async def _purge_tick(self) -> float:
        """Retention: drop finished runs and jobs older than ``retention_hours``, and blobs;
        then forget idempotency keys older than ``idempotency_retention``."""
        if not self.is_leader:
            return self._config.purge_every
        hours = self._config.retention_hours
        if hours > 0:
            before = self._clock.now() - timedelta(hours=hours)
            keys = await self._jobs.purge_finished(before)
            for key in keys:
                await self._blob.delete(key.removeprefix(BLOB_REF_PREFIX))
            if keys:
                log.info("coordinator: retention removed %d blobs (payloads, outputs)", len(keys))
        keep_keys = self._config.idempotency_retention
        if keep_keys > 0:
            before = self._clock.now() - timedelta(seconds=keep_keys)
            for _ in range(_FORGET_BATCHES):  # bounded: the rest waits for the next tick
                if await self._jobs.forget_idempotency_keys(before) < _FORGET_BATCH:
                    break
        return self._config.purge_every

    async def _orphan_tick(self) -> float:
        """Leader only: collect payload and output objects no row references (``orphans``)."""
        if self.is_leader:
            await self._orphans.sweep()
        return min(max(self._config.orphan_age / 4, 0.5), 600.0)
