"""Recording runs as started, in batches, before they execute (``Dispatch.mark_started``).

A run may execute only once the store has recorded its start: then a run lost
before its start provably never ran and is requeued without using an attempt,
and one lost after it is INTERRUPTED (``domain.states.lost_run``).

``begin(run_id)`` waits for that record and returns the start instant, or None
when the run must not execute: the store no longer gives it to this worker (it
was reaped, or its lease was lost), or the batcher is closed (the worker is
stopping; the run is handed back unstarted). Every ``begin`` made while a call
is in flight, or in the same pass of the event loop, goes into the next single
call: 2,000 runs due at one instant are recorded in one round trip.

``UnavailableError`` is retried with backoff until the store answers (the runs
wait). Any other error refuses that batch's runs (logged): they stay RUNNING
and unstarted until their lease expires and the reaper requeues them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from chronoq.domain.clock import Clock
from chronoq.ports.dispatch import Dispatch
from chronoq.services.base import Backoff, Loop, log
from chronoq.services.worker.retrying import until_available

_IDLE = 3600.0
"""A flush with nothing to do waits this long; every ``begin`` wakes it at once."""


class StartBatcher:
    """One ``mark_started`` call per batch of runs starting together (see the module doc)."""

    def __init__(
        self, dispatch: Dispatch, worker_id: str, clock: Clock, backoff: Backoff | None = None
    ) -> None:
        self._dispatch = dispatch
        self._worker_id = worker_id
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._pending: dict[str, asyncio.Future[datetime | None]] = {}
        self._closed = False
        self._calls = 0
        self._loop = Loop("worker-starts", self._flush, clock)

    @property
    def calls(self) -> int:
        """``mark_started`` calls made so far (tests and benchmarks check the batching)."""
        return self._calls

    def start(self) -> None:
        self._loop.start()

    def close(self) -> None:
        """Refuse every run not yet sent to the store, and all later ones (stopping).

        A call already in flight completes: its runs start or not as the store says.
        """
        self._closed = True
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_result(None)

    async def stop(self) -> None:
        """Close, and stop the flushing loop (an in-flight call is cancelled)."""
        self.close()
        await self._loop.stop()

    async def begin(self, run_id: str) -> datetime | None:
        """Wait until ``run_id`` is recorded as started; its start instant, or None: do not run it.

        Cancelling the caller withdraws the request (if it was already sent, the run may
        be recorded as started anyway; the worker then ends or hands it back as usual).
        """
        if self._closed:
            return None
        future: asyncio.Future[datetime | None] = asyncio.get_running_loop().create_future()
        self._pending[run_id] = future
        self._loop.wakeup.set()
        return await future

    async def _flush(self) -> float:
        batch = {rid: f for rid, f in self._pending.items() if not f.done()}
        self._pending = {}
        if not batch:
            return _IDLE
        ids = list(batch)
        at = self._clock.now()

        async def mark() -> list[str]:
            nonlocal at
            at = self._clock.now()  # after a retry, the start is when the store took it
            self._calls += 1
            return await self._dispatch.mark_started(self._worker_id, ids, at)

        try:
            what = f"recording {len(ids)} runs as started"
            started = set(await until_available(mark, self._clock, self._backoff, what))
        except Exception:
            log.exception("worker: recording %d runs as started failed; not running them", len(ids))
            started = set()
        for run_id, future in batch.items():
            if not future.done():
                future.set_result(at if run_id in started else None)
        return 0.0 if self._pending else _IDLE
