"""The writer role: the single path by which submissions reach the store.

``Writer`` lives in each api process. API handlers hand it validated jobs and
await durability. It group-commits: whatever arrived while the previous write
was in flight is committed in one call, so N concurrent submits cost one
transaction, not N. It commits into the store (direct ingestion, then wakes
the pickers) or appends to the submission log (``--ingest log``).

``SubmissionMover`` is the writer process of buffered ingestion: it moves
logged jobs into the store in big batches, each move atomic with its insert.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from chronoq.domain.jobs import Job
from chronoq.errors import UnavailableError
from chronoq.ports.notify import FIRES, SUBMISSIONS, Notifier
from chronoq.ports.submissions import SubmissionLog
from chronoq.services.base import Wakeup, cancel_and_wait, log, spawn

_MAX_BATCH_JOBS = 5000


class Writer:
    name = "writer"

    def __init__(
        self,
        commit: Callable[[Sequence[Job]], Awaitable[None]],
        notifier: Notifier,
        *,
        channel: str = FIRES,
    ) -> None:
        """``commit`` makes jobs durable (``Store.insert_jobs`` or ``SubmissionLog.append``);
        ``channel`` is told afterwards (pickers, or the writer processes)."""
        self._commit_jobs = commit
        self._notifier = notifier
        self._channel = channel
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
            await self._commit_jobs([job for jobs, _f in batch for job in jobs])
        except Exception:
            if len(batch) == 1:
                _fail(batch[0][1])
                return
            # One submission spoiled the group: commit each alone so only it fails.
            for jobs, future in batch:
                try:
                    await self._commit_jobs(jobs)
                except Exception:
                    _fail(future)
                else:
                    _succeed(future)
            self._notifier.publish(self._channel)
            return
        for _jobs, future in batch:
            _succeed(future)
        self._notifier.publish(self._channel)


def _succeed(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(future: asyncio.Future[None]) -> None:
    log.exception("storing a submission failed")
    if not future.done():
        future.set_exception(UnavailableError("the store could not save the job; try again"))


_MOVE_BATCH = 5000
_MOVE_IDLE = 1.0


class SubmissionMover:
    """The writer process of ``--ingest log``: drains the submission log into the store."""

    name = "writer"

    def __init__(self, submissions: SubmissionLog, notifier: Notifier) -> None:
        self._submissions = submissions
        self._notifier = notifier
        self._wakeup = Wakeup()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._notifier.subscribe(SUBMISSIONS, self._wakeup.set)
        self._task = spawn(self._loop(), "writer-mover")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                moved = await self._submissions.move_to_store(_MOVE_BATCH)
            except Exception:
                log.exception("writer: moving submissions into the store failed; retrying")
                moved = 0
            if moved:
                self._notifier.publish(FIRES)
            if moved < _MOVE_BATCH:
                await self._wakeup.wait(_MOVE_IDLE)
