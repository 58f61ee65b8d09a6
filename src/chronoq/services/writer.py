"""The writer role: the single path by which submissions reach the store.

API handlers hand it validated jobs and await durability. It group-commits:
whatever arrived while the previous write was in flight goes to the store in
one ``insert_jobs`` call, so N concurrent submits cost one transaction, not N.
Then it wakes the pickers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from chronoq.domain.jobs import Job
from chronoq.errors import UnavailableError
from chronoq.ports.notify import FIRES, Notifier
from chronoq.ports.store import Store
from chronoq.services.base import cancel_and_wait, log, spawn

_MAX_BATCH_JOBS = 5000


class Writer:
    name = "writer"

    def __init__(self, store: Store, notifier: Notifier) -> None:
        self._store = store
        self._notifier = notifier
        self._pending: deque[tuple[Sequence[Job], asyncio.Future[None]]] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._stopping = False
        self._task = spawn(self._loop(), "writer")

    async def stop(self) -> None:
        self._stopping = True
        self._arrived.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except TimeoutError:
                await cancel_and_wait(self._task)
            self._task = None
        for _jobs, future in self._pending:
            if not future.done():
                future.set_exception(UnavailableError("the writer is stopping"))
        self._pending.clear()

    async def write(self, jobs: Sequence[Job]) -> None:
        """Return once ``jobs`` are durable (all or none); raise if they are not."""
        if self._stopping or self._task is None:
            raise UnavailableError("the writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((jobs, future))
        self._arrived.set()
        await future

    async def _loop(self) -> None:
        while not (self._stopping and not self._pending):
            await self._arrived.wait()
            self._arrived.clear()
            while self._pending:
                batch = self._take_batch()
                await self._commit(batch)

    def _take_batch(self) -> list[tuple[Sequence[Job], asyncio.Future[None]]]:
        batch: list[tuple[Sequence[Job], asyncio.Future[None]]] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0][0]) <= _MAX_BATCH_JOBS):
            item = self._pending.popleft()
            batch.append(item)
            size += len(item[0])
        return batch

    async def _commit(self, batch: list[tuple[Sequence[Job], asyncio.Future[None]]]) -> None:
        try:
            await self._store.insert_jobs([job for jobs, _f in batch for job in jobs])
        except Exception:
            if len(batch) == 1:
                _fail(batch[0][1])
                return
            # One submission spoiled the group: commit each alone so only it fails.
            for jobs, future in batch:
                try:
                    await self._store.insert_jobs(jobs)
                except Exception:
                    _fail(future)
                else:
                    _succeed(future)
            self._notifier.publish(FIRES)
            return
        for _jobs, future in batch:
            _succeed(future)
        self._notifier.publish(FIRES)


def _succeed(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(future: asyncio.Future[None]) -> None:
    log.exception("storing a submission failed")
    if not future.done():
        future.set_exception(UnavailableError("the store could not save the job; try again"))
