"""The picker role: turns due fires into runs.

It sleeps until the earliest fire in its shards is within the look-ahead (or
a submission wakes it), then claims every fire due up to ``now + lookahead``:
the store creates each run and the job's next fire in one transaction. Runs
claimed early carry their exact ``scheduled_for``; workers start them then, so
a burst of fires due in the same second starts together, never early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from chronoq.domain.clock import Clock
from chronoq.observability.metrics import Metrics
from chronoq.ports.notify import FIRES, RUNS, Notifier
from chronoq.ports.store import ClaimDueParams, Store
from chronoq.services.base import Wakeup, cancel_and_wait, log, spawn

_IDLE_RECHECK = 5.0
"""Longest sleep without a hint: bounds the delay if a wake-up is ever lost."""
_ERROR_BACKOFF = 0.5


class Picker:
    name = "picker"

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: Clock,
        metrics: Metrics,
        *,
        lookahead: float,
        shards: Sequence[int] | None = None,
        batch: int = 1000,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._metrics = metrics
        self._lookahead = timedelta(seconds=lookahead)
        self._shards = shards
        self._batch = batch
        self._wakeup = Wakeup()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._notifier.subscribe(FIRES, self._wakeup.set)
        self._task = spawn(self._loop(), "picker")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                delay = await self.tick()
            except Exception:
                log.exception("picker: claiming due fires failed; retrying")
                delay = _ERROR_BACKOFF
            await self._wakeup.wait(delay)

    async def tick(self) -> float:
        """Claim what is due; return how long to sleep before the next look."""
        now = self._clock.now()
        runs = await self._store.claim_due(
            ClaimDueParams(
                shards=self._shards, now=now, horizon=now + self._lookahead, limit=self._batch
            )
        )
        if runs:
            self._metrics.jobs_scanned.inc(len(runs))
            self._metrics.jobs_enqueued.inc(len(runs))
            self._notifier.publish(RUNS)
            if len(runs) == self._batch:
                return 0.0
        next_due = await self._store.next_due_at(self._shards)
        if next_due is None:
            return _IDLE_RECHECK
        wait = (next_due - self._lookahead - self._clock.now()).total_seconds()
        return min(max(wait, 0.001), _IDLE_RECHECK)
