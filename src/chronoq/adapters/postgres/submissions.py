"""``PostgresSubmissionLog``: the SubmissionLog port as one table (``submissions``).

* ``append`` is one multi-row insert (autocommit: durable when it returns).
* ``read`` is one statement: it takes the oldest entries that nobody holds (never
  held, or their hold has passed) ``FOR UPDATE SKIP LOCKED``, so concurrent
  readers never wait for each other nor get the same entry, and marks them held
  by the consumer until ``now() + hold`` (the SERVER's clock, like every expiry
  in the PostgreSQL adapters). An entry whose reader died before ``ack`` is
  delivered again once its hold has passed: at least once.
* ``ack`` deletes; ``get_job`` reads an entry until then (held or not).
* Text PostgreSQL or JSON cannot hold (NUL in a text column, lone surrogates) is a
  ``ValidationError`` and appends nothing.

The entry id is the table's ``seq`` (insertion order), as a decimal string.
The log shares no transaction with the store: the writer role reads, inserts
into the store idempotently (``insert_jobs(..., if_absent=True)``), then acks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec

from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.pool import PgPool
from chronoq.adapters.postgres.rows import is_id
from chronoq.domain.jobs import Job
from chronoq.errors import ValidationError
from chronoq.ports.submissions import LoggedJob

_APPEND = (
    "INSERT INTO submissions (job_id, user_id, body)"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])"
)
_READ = (
    "UPDATE submissions SET held_by = $2, held_until = now() + make_interval(secs => $3)"
    " WHERE seq IN (SELECT seq FROM submissions"
    " WHERE held_until IS NULL OR held_until < now()"
    " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)"
    " RETURNING seq, body"
)
_ACK = "DELETE FROM submissions WHERE seq = ANY($1::bigint[])"
_GET = "SELECT body FROM submissions WHERE job_id = $1::uuid AND user_id = $2"

_MAX_SEQ = 2**63 - 1
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Job)


class PostgresSubmissionLog:
    """The SubmissionLog over PostgreSQL. ``dsn``: ``postgresql://user@host:port/db``."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4) -> None:
        self._pool = PgPool(
            dsn, owner="the submission log", min_size=min_size, max_size=max_size,
            connect_timeout=10.0,
        )  # fmt: skip

    async def start(self) -> None:
        """Open the pool and apply the migrations (serialized with every other starter)."""
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    async def append(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        ids = [j.job_id for j in jobs]
        users = [j.user_id for j in jobs]
        try:
            bodies = [_ENCODER.encode(j) for j in jobs]
        except (UnicodeEncodeError, msgspec.EncodeError) as exc:  # e.g. a lone surrogate
            raise ValidationError(f"append submissions: a job cannot be encoded: {exc}") from exc
        with translated("append submissions"):
            await self._connected().execute(_APPEND, ids, users, bodies)

    async def read(self, consumer: str, limit: int, *, hold: float) -> list[LoggedJob]:
        if not isinstance(consumer, str) or not consumer:
            raise ValidationError("consumer must be a non-empty string", field="consumer")
        if not (isinstance(hold, int | float) and math.isfinite(hold) and hold >= 0):
            raise ValidationError(f"hold must be >= 0 seconds, got {hold!r}", field="hold")
        if limit <= 0:
            return []
        with translated("read submissions"):
            rows = await self._connected().fetch(_READ, limit, consumer, float(hold))
        rows = sorted(rows, key=lambda r: r[0])  # RETURNING has no order; the log does
        return [LoggedJob(entry_id=str(r[0]), job=_DECODER.decode(r[1])) for r in rows]

    async def ack(self, entry_ids: Sequence[str]) -> None:
        seqs = [int(e) for e in entry_ids if _is_seq(e)]
        if not seqs:
            return
        with translated("ack submissions"):
            await self._connected().execute(_ACK, seqs)

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        if not is_id(job_id):
            return None
        with translated("get submission"):
            body = await self._connected().fetchval(_GET, job_id, user_id)
        return None if body is None else _DECODER.decode(body)

    def _connected(self) -> Any:
        return self._pool.get()


def _is_seq(entry_id: object) -> bool:
    """Whether ``entry_id`` could be one of ours (anything else matches no entry)."""
    return (
        isinstance(entry_id, str)
        and 0 < len(entry_id) <= 19
        and entry_id.isascii()
        and entry_id.isdigit()
        and int(entry_id) <= _MAX_SEQ
    )
