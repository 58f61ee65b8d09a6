"""The SubmissionLog port: buffered ingestion (the seed's Kafka between api and writer).

In ``--ingest log`` mode the api answers 201 once a job is durably appended to
the log — a cheap insert with no scheduling indexes — and the writer role
moves logged jobs into the store in big batches. Each move is atomic with the
store insert, so a job is in exactly one of the two places at any time: a
writer crash mid-move leaves it in the log, to be moved again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chronoq.domain.jobs import Job


class SubmissionLog(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, jobs: Sequence[Job]) -> None:
        """Durably log ``jobs`` (all or none) before returning."""
        ...

    async def move_to_store(self, limit: int) -> int:
        """Move up to ``limit`` logged jobs, oldest first, into the store; returns how many.
        Concurrent writers never move the same job."""
        ...

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        """A job of ``user_id`` still waiting in the log, if any (read-your-writes)."""
        ...
