"""Batches run outcomes into few store writes.

Attempts that end within the same moment are recorded by one
``complete_runs`` call. ``flush`` waits until everything reported so far is
stored (used at shutdown).
"""

from __future__ import annotations

import asyncio

from chronoq import failpoints
from chronoq.domain.jobs import RunOutcome
from chronoq.ports.notify import RUNS, Notifier
from chronoq.ports.store import Store
from chronoq.services.base import Wakeup, log

_RETRY_DELAY = 0.5


class Completer:
    def __init__(self, store: Store, notifier: Notifier) -> None:
        self._store = store
        self._notifier = notifier
        self._pending: list[RunOutcome] = []
        self._wakeup = Wakeup()
        self._idle = asyncio.Event()
        self._idle.set()

    def report(self, outcome: RunOutcome) -> None:
        failpoints.hit("after_execution")
        self._pending.append(outcome)
        self._idle.clear()
        self._wakeup.set()

    async def flush(self) -> None:
        await self._idle.wait()

    async def run(self) -> None:
        """The loop; cancel it only after ``flush``."""
        while True:
            await self._wakeup.wait(3600)
            while self._pending:
                batch, self._pending = self._pending, []
                await self._store_batch(batch)
            self._idle.set()

    async def _store_batch(self, batch: list[RunOutcome]) -> None:
        while True:
            try:
                applied = await self._store.complete_runs(batch)
            except Exception:
                log.exception("worker: recording %d outcomes failed; retrying", len(batch))
                await asyncio.sleep(_RETRY_DELAY)
                continue
            failpoints.hit("after_result")
            stale = sum(1 for ok in applied if not ok)
            if stale:
                log.warning("worker: %d outcomes were stale (lease lost) and ignored", stale)
            self._notifier.publish(RUNS)  # retries may now be waiting to be claimed
            return
