"""The claim order of ``MemoryStore``'s QUEUED runs: per queue, highest priority first,
then the oldest ``available_at`` (``domain.queues``).

A run entering QUEUED waits in ``pending`` (by ``available_at``) until a claim's horizon
reaches it, then moves to its queue's ready heap. Entries are lazily exact, like the
other indexes of ``Tables``: one counts only while its version matches its run's
``queue_version``. A claim merges the heads of the queues it may take from; a queue at
its limit is dropped from the merge; a run whose user is at the limit is passed over
(and put back): with a per-user limit a claim may look at a full user's whole backlog,
which a test store can afford.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from datetime import datetime

from chronoq.adapters.memory.store_rows import RunRow
from chronoq.domain.queues import Slots

_Pending = tuple[datetime, int, str]
_Ready = tuple[int, datetime, int, str]
"""(-priority, available_at, version, run_id): the heap's first is the next to claim."""


class ReadyRuns:
    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._ready: dict[str, list[_Ready]] = {}

    def add(self, run: RunRow) -> None:
        """``run`` entered QUEUED (with a new ``queue_version``)."""
        heapq.heappush(self._pending, (run.available_at, run.queue_version, run.run_id))

    def take(
        self,
        runs: Mapping[str, RunRow],
        horizon: datetime,
        limit: int,
        queues: frozenset[str] | None,
        slots: Slots | None,
    ) -> list[RunRow]:
        """Up to ``limit`` QUEUED runs available by ``horizon``, in claim order, within
        ``slots`` (None: no limits; each run taken takes its slot). The caller moves each
        out of QUEUED."""
        self._promote(runs, horizon)
        names = list(self._ready) if queues is None else [q for q in queues if q in self._ready]
        heads: list[tuple[_Ready, str]] = []
        for name in names:
            top = self._head(runs, name)
            if top is not None and not (slots is not None and slots.queue_full(name)):
                heads.append((top, name))
        heapq.heapify(heads)
        taken: list[RunRow] = []
        passed: list[tuple[str, _Ready]] = []
        while heads and len(taken) < limit:
            entry, name = heapq.heappop(heads)
            heapq.heappop(self._ready[name])
            run = runs[entry[3]]
            if run.available_at > horizon or (
                slots is not None and not slots.admit(name, run.user_id)
            ):
                passed.append((name, entry))  # stays QUEUED (a later horizon, a full user)
            else:
                taken.append(run)
            top = self._head(runs, name)
            if top is not None and not (slots is not None and slots.queue_full(name)):
                heapq.heappush(heads, (top, name))
        for name, entry in passed:
            heapq.heappush(self._ready.setdefault(name, []), entry)
        return taken

    def _promote(self, runs: Mapping[str, RunRow], horizon: datetime) -> None:
        pending = self._pending
        while pending and pending[0][0] <= horizon:
            at, version, run_id = heapq.heappop(pending)
            run = runs.get(run_id)
            if run is not None and run.queue_version == version:
                entry = (-run.priority, at, version, run_id)
                heapq.heappush(self._ready.setdefault(run.queue, []), entry)

    def _head(self, runs: Mapping[str, RunRow], name: str) -> _Ready | None:
        heap = self._ready.get(name, [])
        while heap:
            run = runs.get(heap[0][3])
            if run is not None and run.queue_version == heap[0][2]:
                return heap[0]
            heapq.heappop(heap)
        self._ready.pop(name, None)  # an empty queue costs later claims nothing
        return None
