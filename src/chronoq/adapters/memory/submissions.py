"""``MemorySubmissionLog``: the SubmissionLog port in memory, for tests.

Entries live in an insertion-ordered dict until acknowledged. ``read`` holds
each entry it returns for ``hold`` seconds of the injected clock's monotonic
time; an entry whose hold has run out is delivered again, to any consumer
(at least once). Every method runs without awaiting, so each is atomic on the
event loop. Like the store, the log is unavailable before ``start`` and after
``close`` (closing keeps the entries).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from chronoq.domain.clock import Clock
from chronoq.domain.jobs import Job
from chronoq.errors import UnavailableError, ValidationError
from chronoq.ports.submissions import LoggedJob


@dataclass(slots=True)
class _Entry:
    job: Job
    held_until: float = -math.inf
    """Monotonic time until which a reader holds it (in the past: free to read)."""


class MemorySubmissionLog:
    """Append / read with a hold / acknowledge, in memory (see the module docstring)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._open = False
        self._entries: dict[str, _Entry] = {}
        self._by_job: dict[str, list[str]] = {}
        self._ids = itertools.count(1)

    async def start(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise UnavailableError("the in-memory submission log is not started (or closed)")

    async def append(self, jobs: Sequence[Job]) -> None:
        self._check_open()
        for job in jobs:
            entry_id = str(next(self._ids))
            self._entries[entry_id] = _Entry(job)
            self._by_job.setdefault(job.job_id, []).append(entry_id)

    async def read(self, consumer: str, limit: int, *, hold: float) -> list[LoggedJob]:
        if not isinstance(consumer, str) or not consumer:
            raise ValidationError("consumer must be a non-empty string", field="consumer")
        if limit < 0:
            raise ValidationError(f"limit must be >= 0, got {limit!r}", field="limit")
        if not (0 <= hold < math.inf):
            raise ValidationError(f"hold must be finite seconds >= 0, got {hold!r}", field="hold")
        self._check_open()
        now = self._clock.monotonic()
        taken: list[LoggedJob] = []
        for entry_id, entry in self._entries.items():
            if len(taken) >= limit:
                break
            if entry.held_until > now:
                continue  # another read holds it
            entry.held_until = now + hold
            taken.append(LoggedJob(entry_id=entry_id, job=entry.job))
        return taken

    async def ack(self, entry_ids: Sequence[str]) -> None:
        self._check_open()
        for entry_id in entry_ids:
            entry = self._entries.pop(entry_id, None)
            if entry is None:
                continue
            ids = self._by_job[entry.job.job_id]
            ids.remove(entry_id)
            if not ids:
                del self._by_job[entry.job.job_id]

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        self._check_open()
        for entry_id in reversed(self._by_job.get(job_id, ())):
            job = self._entries[entry_id].job
            if job.user_id == user_id:
                return job
        return None

    @property
    def waiting(self) -> int:
        """Entries not acknowledged yet (held or not), for tests."""
        return len(self._entries)
