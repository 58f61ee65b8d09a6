"""The writer role: the single path by which submissions reach the store.

``Writer`` lives in each api process. API handlers hand it validated jobs and
await durability. It group-commits: whatever arrived while the previous write
was in flight is committed in one call, so N concurrent submits cost one
transaction, not N. It commits into the store (direct ingestion, then wakes
the pickers) or appends to the submission log (``--ingest log``).

``SubmissionMover`` is the writer process of buffered ingestion: it moves
logged jobs into the store in big batches: ``SubmissionLog.read`` (the entries
are held for this writer), ``JobStore.insert_jobs(if_absent=True)``, then
``ack``. The log delivers at least once and the insert is idempotent on the job
id, so a writer that dies between insert and ack makes no second job: the entry
is delivered again after its hold and skipped. Failures:

* the store or the log is unavailable (``UnavailableError``): the tick fails and
  the ``Loop`` backs off; the entries already read are kept and retried first
  (they stay held for this writer, so reading again would not return them);
* the store refuses a batch for any other reason: it is split, each entry
  inserted alone; an entry refused alone can never be stored — it is logged
  loudly, counted (``submissions_dropped``) and acknowledged, so one poison
  entry cannot wedge the log.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from chronoq.domain.clock import Clock
from chronoq.domain.jobs import Job, Run
from chronoq.errors import LimitExceededError, UnavailableError
from chronoq.observability.metrics import Metrics
from chronoq.ports.jobs import JobStore
from chronoq.ports.notify import FIRES, RUNS, SUBMISSIONS, Notifier
from chronoq.ports.submissions import LoggedJob, SubmissionLog
from chronoq.services.base import Loop, log

_MAX_BATCH_JOBS = 5000
_IDLE = 3600.0
"""The writer sleeps until a submission arrives; this only bounds one wait."""
STOP_GRACE = 10.0
"""Seconds ``stop`` waits for submissions in flight to be committed."""

_Pending = tuple[Sequence[Job], Sequence[Run], asyncio.Future[None]]
Commit = Callable[[Sequence[Job], Sequence[Run]], Awaitable[None]]
"""Makes jobs durable, with the runs of first fires claimed at insert (``domain.fire_now``;
always empty for a submission log)."""


class Writer:
    name = "writer"

    def __init__(
        self,
        commit: Commit,
        notifier: Notifier,
        clock: Clock,
        *,
        channel: str = FIRES,
    ) -> None:
        """``commit`` makes jobs durable (``JobStore.insert_jobs`` or ``SubmissionLog.append``);
        ``channel`` is told afterwards of jobs not fired at insert (pickers, or the writer
        processes), the workers (``RUNS``) of runs fired at insert."""
        self._commit_jobs = commit
        self._notifier = notifier
        self._clock = clock
        self._channel = channel
        self._pending: deque[_Pending] = deque()
        self._drained = asyncio.Event()
        self._drained.set()
        self._loop = Loop("writer", self._drain, clock)
        self._running = False

    async def start(self) -> None:
        if not self._running:
            self._running = True
            self._loop.start()

    async def stop(self) -> None:
        """Refuse new writes, commit those in flight (up to ``STOP_GRACE``), fail the rest."""
        if self._running:
            self._running = False
            self._loop.wakeup.set()
            if not await self._clock.wait(self._drained, STOP_GRACE):
                log.error("writer: submissions still uncommitted after %gs; failing them",
                          STOP_GRACE)  # fmt: skip
        await self._loop.stop()
        while self._pending:
            _fail(self._pending.popleft()[2], "the writer is stopping")

    async def write(self, jobs: Sequence[Job], runs: Sequence[Run] = ()) -> None:
        """Return once ``jobs`` (and ``runs``: their first fires, claimed at insert) are
        durable, all or none; raise if they are not."""
        if not self._running:
            raise UnavailableError("the writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((jobs, runs, future))
        self._drained.clear()
        self._loop.wakeup.set()
        await future

    async def _drain(self) -> float:
        """Commit everything pending, a group at a time; sleep until the next arrival."""
        while self._pending:
            await self._commit(self._take_batch())
        self._drained.set()
        return _IDLE

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0][0]) <= _MAX_BATCH_JOBS):
            item = self._pending.popleft()
            batch.append(item)
            size += len(item[0])
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            await self._commit_jobs(
                [job for jobs, _r, _f in batch for job in jobs],
                [run for _j, runs, _f in batch for run in runs],
            )
        except Exception as exc:
            if len(batch) == 1:
                _refused(batch[0][2], exc)
                return
            # One submission spoiled the group: commit each alone so only it fails (a
            # per-user limit the group exceeds refuses only the submissions past it).
            for jobs, runs, future in batch:
                try:
                    await self._commit_jobs(jobs, runs)
                except Exception as alone:
                    _refused(future, alone)
                else:
                    _succeed(future)
            self._hint(batch)
            return
        for _jobs, _runs, future in batch:
            _succeed(future)
        self._hint(batch)

    def _hint(self, batch: list[_Pending]) -> None:
        """Wake the workers for runs fired at insert, the pickers (or writers) for the rest."""
        fired = sum(len(runs) for _j, runs, _f in batch)
        if fired:
            self._notifier.publish(RUNS)
        if fired < sum(len(jobs) for jobs, _r, _f in batch):
            self._notifier.publish(self._channel)


def into_store(store: JobStore, *, max_active_per_user: int = 0) -> Commit:
    """Direct ingestion: insert into the store (with the per-user active-jobs limit)."""

    async def commit(jobs: Sequence[Job], runs: Sequence[Run]) -> None:
        await store.insert_jobs(jobs, max_active_per_user=max_active_per_user, runs=runs)

    return commit


def into_log(submissions: SubmissionLog) -> Commit:
    """Buffered ingestion: append to the submission log (nothing is fired at insert)."""

    async def commit(jobs: Sequence[Job], runs: Sequence[Run]) -> None:
        if runs:
            raise ValueError("a submission log takes jobs only: fire at insert is off")
        await submissions.append(jobs)

    return commit


def _succeed(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _refused(future: asyncio.Future[None], exc: Exception) -> None:
    """A submission the store refused: a per-user limit is the caller's answer (429), as
    it is; anything else is logged and answered as unavailable."""
    if isinstance(exc, LimitExceededError):
        if not future.done():
            future.set_exception(exc)
        return
    log.error("writer: storing a submission failed", exc_info=exc)
    _fail(future)


def _fail(
    future: asyncio.Future[None], message: str = "the store could not save the job; try again"
) -> None:
    if not future.done():
        future.set_exception(UnavailableError(message))


MOVE_BATCH = 5000
MOVE_HOLD = 30.0
"""Seconds the log holds entries for this writer: longer than any insert takes, so another
writer re-reads them only if this one died."""
_MOVE_IDLE = 1.0
"""Longest sleep without a ``submissions`` hint: bounds the delay if one is lost."""


class SubmissionMover:
    """The writer process of ``--ingest log``: drains the submission log into the store."""

    name = "writer"

    def __init__(
        self,
        submissions: SubmissionLog,
        jobs: JobStore,
        notifier: Notifier,
        clock: Clock,
        metrics: Metrics,
        *,
        consumer: str,
        batch: int = MOVE_BATCH,
        hold: float = MOVE_HOLD,
    ) -> None:
        """``consumer``: this writer's name in the log (its node id)."""
        self._submissions = submissions
        self._jobs = jobs
        self._notifier = notifier
        self._consumer = consumer
        self._batch = batch
        self._hold = hold
        self._metrics = metrics
        self._carried: list[LoggedJob] = []
        """Entries read but not yet acknowledged: a failed tick retries them first."""
        self._loop = Loop("writer-mover", self.tick, clock)
        self._started = False

    async def start(self) -> None:
        if not self._started:
            self._started = True
            self._notifier.subscribe(SUBMISSIONS, self._loop.wakeup.set)
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def tick(self) -> float:
        """Move one batch; 0 if more may be waiting, else the idle wait."""
        entries = self._carried or await self._submissions.read(
            self._consumer, self._batch, hold=self._hold
        )
        if not entries:
            return _MOVE_IDLE
        self._carried = entries
        await self._insert(entries)
        await self._submissions.ack([e.entry_id for e in entries])
        self._carried = []
        self._metrics.submissions_moved.inc(len(entries))
        self._notifier.publish(FIRES)
        return 0.0 if len(entries) >= self._batch else _MOVE_IDLE

    async def _insert(self, entries: list[LoggedJob]) -> None:
        try:
            await self._jobs.insert_jobs([e.job for e in entries], if_absent=True)
        except UnavailableError:
            raise
        except Exception:
            if len(entries) == 1:
                self._drop(entries[0])
                return
            log.warning("writer: the store refused a batch of %d; inserting one by one",
                        len(entries))  # fmt: skip
            for entry in entries:
                try:
                    await self._jobs.insert_jobs([entry.job], if_absent=True)
                except UnavailableError:
                    raise  # the whole batch is retried; the inserted ones are skipped then
                except Exception:
                    self._drop(entry)

    def _drop(self, entry: LoggedJob) -> None:
        log.exception(
            "writer: DROPPING submission %s (job %s of user %s): the store refuses it;"
            " it is acknowledged so the log can move on",
            entry.entry_id, entry.job.job_id, entry.job.user_id,
        )  # fmt: skip
        self._metrics.submissions_dropped.inc()
