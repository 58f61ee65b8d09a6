"""The coordinator role: leader-only maintenance.

Embedded mode has exactly one node (the data-dir lock guarantees it), so the
node is always the leader. It reaps runs whose lease expired — attempt + 1,
or DEAD when attempts are spent — and, at start-up, recovers runs the
previous process left RUNNING when it died (``recover_orphans``): with the
lock held, no live worker can own them.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from chronoq.domain.clock import Clock
from chronoq.domain.retry import RetryPolicy
from chronoq.observability.metrics import Metrics
from chronoq.ports.notify import RUNS, Notifier
from chronoq.ports.store import ReapParams, Store
from chronoq.services.base import cancel_and_wait, log, spawn


class Coordinator:
    name = "coordinator"

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: Clock,
        metrics: Metrics,
        *,
        lease_seconds: float,
        retry: RetryPolicy,
        recover_orphans: bool,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._metrics = metrics
        self._interval = max(lease_seconds / 2, 0.5)
        self._retry = retry
        self._recover_orphans = recover_orphans
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._recover_orphans:
            count = await self._reap(expire_all=True)
            if count:
                log.warning("coordinator: recovered %d runs left running by a dead process", count)
        self._task = spawn(self._loop(), "coordinator-reaper")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                count = await self._reap(expire_all=False)
            except Exception:
                log.exception("coordinator: reaping expired leases failed")
                continue
            if count:
                log.warning("coordinator: reaped %d runs with expired leases", count)

    async def _reap(self, *, expire_all: bool) -> int:
        now = self._clock.now()
        total = 0
        while True:
            count = await self._store.reap_expired(
                ReapParams(
                    now=now,
                    retry_at=now + timedelta(seconds=self._retry.delay(1)),
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
