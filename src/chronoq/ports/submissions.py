"""The SubmissionLog port: buffered ingestion (the seed's Kafka between api and writer).

In buffered mode the api answers 201 once a job is durably appended to the
log, and writer processes move logged jobs into the store in big batches.
The log is append / read / acknowledge, so a Redis Stream, a Kafka topic or
a table can implement it:

* ``append`` is durable before it returns (all or none).
* ``read`` delivers entries at least once: an entry read by one writer is held
  for that writer for ``hold`` seconds; if it is not acknowledged by then
  (the writer died between the store insert and ``ack``) it is delivered
  again, to any writer.
* The move is idempotent on the job id (``JobStore.insert_jobs(...,
  if_absent=True)``), so a redelivered entry never makes a second job.
* A job is readable (``get_job``) from the moment ``append`` returns until its
  entry is acknowledged, and from the store after it was inserted: there is no
  moment when neither has it.

Kafka mapping (docs/extending.md): entries are records keyed by job id in a
topic partitioned by shard range; writers are one consumer group; ``ack``
commits offsets after the store insert; ``hold`` is the group's session timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chronoq.domain.jobs import Job


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedJob:
    entry_id: str
    """The log's own id of the entry (what ``ack`` takes)."""
    job: Job


class SubmissionLog(Protocol):
    async def start(self) -> None:
        """Connect; safe to call twice."""
        ...

    async def close(self) -> None:
        """Close; safe to call twice."""
        ...

    async def append(self, jobs: Sequence[Job]) -> None:
        """Durably log ``jobs`` (all or none) before returning."""
        ...

    async def read(self, consumer: str, limit: int, *, hold: float) -> list[LoggedJob]:
        """Up to ``limit`` entries, oldest first, that are neither acknowledged nor held by
        another read; each is held for ``consumer`` for ``hold`` seconds."""
        ...

    async def ack(self, entry_ids: Sequence[str]) -> None:
        """Drop these entries for good (their jobs are in the store); unknown ids are fine."""
        ...

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        """A job of ``user_id`` still waiting in the log, if any (read-your-writes)."""
        ...
