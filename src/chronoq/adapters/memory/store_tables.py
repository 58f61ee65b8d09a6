"""The tables behind ``MemoryStore``, with the constraints a database schema would enforce.

``Tables`` holds jobs and runs in dictionaries plus the indexes the store's
queries need, and is the only code that changes them, so the rules below hold
whatever the store above does (a broken rule raises, with nothing changed):

* a job id is unique; ``(job_id, scheduled_for, attempt)`` is unique;
* ``(user_id, idempotency_key)`` is unique while the key is kept (``keys``);
* at most one run per fire ``(job_id, scheduled_for)`` is in ``RUN_TERMINAL``;
* a run's status moves only along ``RUN_TRANSITIONS`` (``domain.states.transition``).

Indexes (each kept exact, or lazily exact: a heap entry counts only while its
version still matches its row):

* the due index: one heap per shard of ``(next_fire_at, version, job_id)``;
* the queue: one heap of ``(available_at, version, run_id)`` over QUEUED runs, and
  their claim order per queue (``store_ready``);
* ``running``: the RUNNING run ids (the reaper's scan);
* per user, ``(position, job_id)`` in insertion order: the list cursor is the
  user's own position, so it tells nothing about other users' jobs.

The rows are ``store_rows``; the fire ledger's skips are ``store_skips.SkipTable``.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Collection, Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from chronoq.adapters.memory.store_ready import ReadyRuns
from chronoq.adapters.memory.store_rows import Fire, JobRow, RunRow
from chronoq.adapters.memory.store_skips import SkipTable
from chronoq.domain.jobs import Job
from chronoq.domain.live_output import LiveOutput
from chronoq.domain.queues import Slots
from chronoq.domain.states import RUN_TERMINAL, RunStatus, transition


class IntegrityError(Exception):
    """A write the schema refuses (a duplicate key, a second terminal run of a fire).

    Like a database's integrity error it signals a bug in the caller, not bad user
    input: the store checks what users can get wrong before it writes.
    """


_DueEntry = tuple[datetime, int, str]


class Tables:
    """Jobs, runs and their indexes; every change goes through a method here."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRow] = {}
        self.runs: dict[str, RunRow] = {}
        self.running: dict[str, None] = {}
        """RUNNING run ids, as an insertion-ordered set."""
        self.live: dict[str, LiveOutput] = {}
        """The newest live output window of RUNNING runs (dropped when they leave RUNNING)."""
        self.fence_epoch = 0
        self.fence_owners: dict[int, str] = {}
        self._versions = itertools.count(1)
        self._attempts: set[tuple[str, datetime, int]] = set()
        self._terminal: dict[Fire, str] = {}
        self._due: dict[int, list[_DueEntry]] = {}
        self._queue: list[_DueEntry] = []
        self._ready = ReadyRuns()
        self._by_user: dict[str, list[tuple[int, str]]] = {}
        self._user_positions: dict[str, int] = {}
        self.skips = SkipTable()
        self.keys: dict[tuple[str, str], str] = {}
        """``(user_id, idempotency_key)`` -> job id: unique while the key is kept."""

    # -- jobs ----------------------------------------------------------------------------------

    def add_job(self, job: Job) -> None:
        if job.job_id in self.jobs:
            raise IntegrityError(f"duplicate job id {job.job_id!r}")
        key = self.key_of(job)
        if key is not None and key in self.keys:
            raise IntegrityError(f"duplicate idempotency key for user {job.user_id!r}")
        if key is not None:
            self.keys[key] = job.job_id
        position = self._user_positions.get(job.user_id, 0) + 1
        self._user_positions[job.user_id] = position
        row = JobRow(job=job, position=position)
        self.jobs[job.job_id] = row
        self._by_user.setdefault(job.user_id, []).append((position, job.job_id))
        self._index_due(row)

    @staticmethod
    def key_of(job: Job) -> tuple[str, str] | None:
        return None if job.idempotency_key is None else (job.user_id, job.idempotency_key)

    def update_job(self, row: JobRow, **changes: Any) -> None:
        """Replace fields of the job; setting ``next_fire_at`` (re)indexes it as due;
        clearing ``idempotency_key`` frees the key."""
        old_key = self.key_of(row.job)
        row.job = replace(row.job, **changes)
        if old_key is not None and self.key_of(row.job) != old_key:
            self.keys.pop(old_key, None)
        if "next_fire_at" in changes:
            self._index_due(row)

    def delete_job(self, job_id: str) -> Job:
        row = self.jobs.pop(job_id)
        if row.runs:
            raise IntegrityError(f"job {job_id!r} still has runs")
        entries = self._by_user[row.job.user_id]
        del entries[bisect.bisect_left(entries, (row.position, job_id))]
        key = self.key_of(row.job)
        if key is not None:
            self.keys.pop(key, None)
        self.skips.drop_job(job_id)
        return row.job  # its due entry is now stale (no row) and is dropped lazily

    def user_jobs(self, user_id: str, after: int) -> Iterator[tuple[int, Job]]:
        """The user's jobs with a position after ``after``, in position order."""
        entries = self._by_user.get(user_id, [])
        start = bisect.bisect_right(entries, (after, "\U0010ffff"))
        for position, job_id in entries[start:]:
            yield position, self.jobs[job_id].job

    # -- the due index -------------------------------------------------------------------------

    def _index_due(self, row: JobRow) -> None:
        row.due_version = next(self._versions)
        at = row.job.next_fire_at
        if at is not None:
            heap = self._due.setdefault(row.job.shard_id, [])
            heapq.heappush(heap, (at, row.due_version, row.job.job_id))

    def _due_head(self, shard: int) -> _DueEntry | None:
        heap = self._due.get(shard)
        while heap:
            _, version, job_id = heap[0]
            row = self.jobs.get(job_id)
            if row is not None and row.due_version == version:
                return heap[0]
            heapq.heappop(heap)
        self._due.pop(shard, None)
        return None

    def _due_shards(self, shards: Iterable[int] | None) -> list[int]:
        return list(self._due) if shards is None else [s for s in set(shards) if s in self._due]

    def next_due_at(self, shards: Iterable[int] | None) -> datetime | None:
        heads = [h for h in map(self._due_head, self._due_shards(shards)) if h is not None]
        return min(heads)[0] if heads else None

    def take_due(
        self,
        shards: Iterable[int] | None,
        horizon: datetime,
        limit: int,
        excluded_users: Collection[str] = (),
    ) -> list[JobRow]:
        """Up to ``limit`` jobs due by ``horizon`` in these shards, earliest first, each once,
        none of ``excluded_users``.

        Their entries leave the index: the caller must give each a new ``next_fire_at``
        (``update_job``) or hand them back with ``untake_due``.
        """
        heads: list[tuple[_DueEntry, int]] = []
        for shard in self._due_shards(shards):
            head = self._due_head(shard)
            if head is not None and head[0] <= horizon:
                heads.append((head, shard))
        heapq.heapify(heads)
        taken: list[JobRow] = []
        passed: list[JobRow] = []
        while heads and len(taken) < limit:
            (_, _, job_id), shard = heapq.heappop(heads)
            heapq.heappop(self._due[shard])
            row = self.jobs[job_id]
            (passed if row.job.user_id in excluded_users else taken).append(row)
            head = self._due_head(shard)
            if head is not None and head[0] <= horizon:
                heapq.heappush(heads, (head, shard))
        self.untake_due(passed)
        return taken

    def untake_due(self, rows: Iterable[JobRow]) -> None:
        for row in rows:
            self._index_due(row)

    def due_jobs(self) -> Iterator[Job]:
        """Every job with a next fire (unordered)."""
        return (r.job for r in self.jobs.values() if r.job.next_fire_at is not None)

    # -- runs ----------------------------------------------------------------------------------

    def has_run(self, job_id: str, scheduled_for: datetime, attempt: int) -> bool:
        return (job_id, scheduled_for, attempt) in self._attempts

    def check_new_run(self, job_id: str, scheduled_for: datetime, attempt: int) -> None:
        """Raise if a run with this key could not be inserted (call before other writes)."""
        if job_id not in self.jobs:
            raise IntegrityError(f"no job {job_id!r} for a new run")
        if (job_id, scheduled_for, attempt) in self._attempts:
            raise IntegrityError(f"duplicate run ({job_id}, {scheduled_for}, attempt {attempt})")

    def add_run(self, run: RunRow) -> None:
        """Insert a run row (QUEUED, as every run starts, or as given by a test)."""
        self.check_new_run(run.job_id, run.scheduled_for, run.attempt)
        if run.run_id in self.runs:
            raise IntegrityError(f"duplicate run id {run.run_id!r}")
        self._check_terminal(run, run.status)
        job = self.jobs[run.job_id].job  # a new run takes its job's queue as it is now
        run.queue, run.priority = job.queue, job.priority
        self._attempts.add((run.job_id, run.scheduled_for, run.attempt))
        self.runs[run.run_id] = run
        self.jobs[run.job_id].runs.append(run.run_id)
        self._enter(run, run.status)

    def move(self, run: RunRow, new: RunStatus) -> None:
        """Change the run's status along ``RUN_TRANSITIONS``; raises with nothing changed
        if the table or the one-terminal-per-fire rule refuses."""
        transition(run.status, new)
        self._check_terminal(run, new)
        self._leave(run)
        run.status = new
        self._enter(run, new)

    def delete_run(self, run_id: str) -> None:
        run = self.runs.pop(run_id)
        self._leave(run)
        self._attempts.discard((run.job_id, run.scheduled_for, run.attempt))
        self.jobs[run.job_id].runs.remove(run_id)

    def _check_terminal(self, run: RunRow, new: RunStatus) -> None:
        if new in RUN_TERMINAL:
            holder = self._terminal.get(run.fire)
            if holder is not None and holder != run.run_id:
                raise IntegrityError(f"fire {run.fire} already has a terminal run ({holder})")

    def _enter(self, run: RunRow, status: RunStatus) -> None:
        if status in RUN_TERMINAL:
            self._terminal[run.fire] = run.run_id
        elif status is RunStatus.RUNNING:
            self.running[run.run_id] = None
        elif status is RunStatus.QUEUED:
            run.queue_version = next(self._versions)
            run.published_at = None  # entering QUEUED: any earlier message is spent
            heapq.heappush(self._queue, (run.available_at, run.queue_version, run.run_id))
            self._ready.add(run)

    def _leave(self, run: RunRow) -> None:
        if run.status in RUN_TERMINAL and self._terminal.get(run.fire) == run.run_id:
            del self._terminal[run.fire]
        self.running.pop(run.run_id, None)
        self.live.pop(run.run_id, None)
        run.queue_version = 0  # any queue entry of this run is stale now

    def make_available(self, run: RunRow, available_at: datetime) -> None:
        """Move a QUEUED run's ``available_at`` (a buffered run released): re-indexed, and
        unpublished again so a queued dispatch sends it anew."""
        if run.status is not RunStatus.QUEUED:
            raise IntegrityError(f"run {run.run_id} is not QUEUED")
        self._leave(run)
        run.available_at = available_at
        self._enter(run, RunStatus.QUEUED)

    # -- the queue -----------------------------------------------------------------------------

    def _queue_head(self) -> RunRow | None:
        while self._queue:
            _, version, run_id = self._queue[0]
            run = self.runs.get(run_id)
            if run is not None and run.queue_version == version:
                return run
            heapq.heappop(self._queue)
        return None

    def next_available_at(self) -> datetime | None:
        head = self._queue_head()
        return None if head is None else head.available_at

    def take_queued(
        self,
        horizon: datetime,
        limit: int,
        queues: frozenset[str] | None = None,
        slots: Slots | None = None,
    ) -> list[RunRow]:
        """Up to ``limit`` QUEUED runs available by ``horizon``, in claim order (highest
        priority, then earliest; ``store_ready``), of ``queues`` (None: any), within
        ``slots``. The caller moves each out of QUEUED (their index entries go stale)."""
        return self._ready.take(self.runs, horizon, limit, queues, slots)

    def queued(self) -> Iterator[RunRow]:
        """Every QUEUED run (unordered)."""
        return (self.runs[i] for _, v, i in self._queue if self._is_queued(i, v))

    def _is_queued(self, run_id: str, version: int) -> bool:
        run = self.runs.get(run_id)
        return run is not None and run.queue_version == version
