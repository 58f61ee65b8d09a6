"""The coordinator role: leader election, shard assignment and leader-only maintenance.

Every coordinator process runs the same loop (see the state model in
``chronoq.ports.coordination``). Each tick (``leader_ttl / 3``) it tries to
take or renew the leader lease. The leader

* spreads the shards over the live pickers (``spread_shards``) and writes the
  assignment fenced by its epoch whenever the live set changes;
* reaps runs whose lease expired (attempt + 1, or DEAD when attempts are spent),
  starting half a lease into its term, so workers cut off by a store outage can
  extend their leases and record their outcomes first.

The trust window: a leader acts only until its last renewal time + ttl minus a
margin (by the local monotonic clock, which never jumps); a failed renewal
demotes it at once. Its writes are fenced in the store anyway, so a leader
that is wrong about itself changes nothing.

Embedded mode has one node (the data-dir lock guarantees it): it is always
the leader, there are no shards to assign (its picker owns them all), and at
start it recovers runs the previous process left RUNNING (``recover_orphans``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

from chronoq.domain.clock import Clock
from chronoq.domain.jobs import BLOB_REF_PREFIX
from chronoq.domain.retry import RetryPolicy
from chronoq.observability.metrics import Metrics
from chronoq.ports.blob import BlobStore
from chronoq.ports.coordination import Coordination, spread_shards
from chronoq.ports.notify import RUNS, Notifier
from chronoq.ports.store import ReapParams, Store
from chronoq.services.base import cancel_and_wait, log, spawn

_TRUST_MARGIN = 0.25
"""Share of the ttl a leader gives up at the end of its lease, against clock drift."""


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
    purge_every: float = 600.0


class Coordinator:
    name = "coordinator"

    def __init__(
        self,
        store: Store,
        blob: BlobStore,
        notifier: Notifier,
        coordination: Coordination,
        clock: Clock,
        metrics: Metrics,
        config: CoordinatorConfig,
    ) -> None:
        self._store = store
        self._blob = blob
        self._notifier = notifier
        self._coordination = coordination
        self._clock = clock
        self._metrics = metrics
        self._config = config
        self._reap_every = max(config.lease_seconds / 2, 0.5)
        self._next_purge = time.monotonic() + min(config.purge_every, 60.0)
        self._epoch: int | None = None
        self._trusted_until = 0.0
        self._reap_not_before = 0.0
        self._assigned: dict[int, str] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return not self._config.distributed or time.monotonic() < self._trusted_until

    async def start(self) -> None:
        if self._config.recover_orphans:
            count = await self._reap(expire_all=True)
            if count:
                log.warning("coordinator: recovered %d runs left running by a dead process", count)
        loop = self._lead_loop() if self._config.distributed else self._reap_loop()
        self._task = spawn(loop, "coordinator")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._config.distributed and self._epoch is not None:
            try:
                await self._coordination.resign(self._config.node_id)
            except Exception:
                log.warning("coordinator: could not resign; the lease will expire")
            self._epoch = None

    # -- embedded ------------------------------------------------------------------------

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reap_every)
            await self._reap_safely()
            await self._purge_when_due()

    # -- distributed ---------------------------------------------------------------------

    async def _lead_loop(self) -> None:
        next_reap = time.monotonic() + self._reap_every
        while True:
            await self._campaign()
            if self.is_leader:
                await self._rebalance_safely()
                if time.monotonic() >= max(next_reap, self._reap_not_before):
                    await self._reap_safely()
                    next_reap = time.monotonic() + self._reap_every
                await self._purge_when_due()
            await asyncio.sleep(self._config.leader_ttl / 3)

    async def _campaign(self) -> None:
        asked = time.monotonic()
        try:
            lease = await self._coordination.try_lead(self._config.node_id, self._config.leader_ttl)
        except Exception:
            lease = None
            log.warning("coordinator: the leader lease could not be renewed", exc_info=True)
        if lease is None:
            if self._epoch is not None:
                log.warning("coordinator %s: lost leadership (epoch %d)", self._config.node_id,
                            self._epoch)  # fmt: skip
            self._epoch, self._trusted_until, self._assigned = None, 0.0, None
            return
        if lease.epoch != self._epoch:
            log.info("coordinator %s: leader at epoch %d", self._config.node_id, lease.epoch)
            self._assigned = None
            # A new term often follows an outage of the store, during which live workers
            # could not extend their leases; give them a heartbeat or two to do so (and to
            # record finished runs) before treating an expired lease as a dead worker.
            self._reap_not_before = time.monotonic() + self._config.lease_seconds / 2
        self._epoch = lease.epoch
        self._trusted_until = asked + self._config.leader_ttl * (1 - _TRUST_MARGIN)

    async def _rebalance_safely(self) -> None:
        try:
            await self._rebalance()
        except Exception:
            log.exception("coordinator: rebalancing shards failed")

    async def _rebalance(self) -> None:
        assert self._epoch is not None
        pickers = await self._coordination.members("picker", ttl=self._config.member_ttl)
        wanted = spread_shards(self._config.shard_count, [p.member_id for p in pickers])
        if self._assigned is None:
            current = await self._coordination.assignments()
            self._assigned = {shard: owner for shard, (owner, _epoch) in current.items()}
        if wanted == self._assigned or not self.is_leader:
            return
        epoch = await self._coordination.assign_shards(self._config.node_id, self._epoch, wanted)
        if epoch is None:
            log.warning("coordinator: fenced out while assigning shards; demoting")
            self._epoch, self._trusted_until, self._assigned = None, 0.0, None
            return
        self._assigned = wanted
        log.info(
            "coordinator: %d shards over %d pickers at assignment epoch %d",
            len(wanted), len(pickers), epoch,
        )  # fmt: skip

    # -- maintenance ---------------------------------------------------------------------

    async def _reap_safely(self) -> None:
        try:
            count = await self._reap(expire_all=False)
        except Exception:
            log.exception("coordinator: reaping expired leases failed")
            return
        if count:
            log.warning("coordinator: reaped %d runs with expired leases", count)

    async def _purge_when_due(self) -> None:
        """Retention: drop finished runs and jobs older than ``retention_hours``, and blobs."""
        hours = self._config.retention_hours
        if hours <= 0 or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + self._config.purge_every
        before = self._clock.now() - timedelta(hours=hours)
        try:
            keys = await self._store.purge_finished(before)
            for key in keys:
                await self._blob.delete(key.removeprefix(BLOB_REF_PREFIX))
        except Exception:
            log.exception("coordinator: retention purge failed")
            return
        if keys:
            log.info("coordinator: retention removed %d finished jobs", len(keys))

    async def _reap(self, *, expire_all: bool) -> int:
        now = self._clock.now()
        total = 0
        while True:
            count = await self._store.reap_expired(
                ReapParams(
                    now=now,
                    retry_at=now + timedelta(seconds=self._config.retry.delay(1)),
                    expire_all=expire_all,
                )
            )
            total += count
            if count < 1000:
                break
        if total:
            self._metrics.runs_reaped.inc(total)
            self._notifier.publish(RUNS)
        return total
