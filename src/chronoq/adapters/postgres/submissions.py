"""``PostgresSubmissionLog``: the SubmissionLog port as a table beside ``jobs``.

Appending is one multi-row insert into an append-only table. Moving is one
transaction: take the oldest rows ``FOR UPDATE SKIP LOCKED`` (writers never
collide), delete them, insert the jobs (``ON CONFLICT DO NOTHING``: moving
twice is harmless).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from chronoq.adapters.postgres import sql
from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.pool import PgPool
from chronoq.adapters.postgres.rows import job_args
from chronoq.domain.jobs import Job

_APPEND = (
    "INSERT INTO submissions (job_id, user_id, body)"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])"
)
_TAKE = (
    "DELETE FROM submissions WHERE seq IN (SELECT seq FROM submissions ORDER BY seq"
    " LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING body"
)
_GET = "SELECT body FROM submissions WHERE job_id = $1::uuid AND user_id = $2"

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Job)


class PostgresSubmissionLog:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4) -> None:
        self._pool = PgPool(
            dsn, owner="the submission log", min_size=min_size, max_size=max_size,
            connect_timeout=10.0,
        )  # fmt: skip

    async def start(self) -> None:
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    async def append(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        ids = [j.job_id for j in jobs]
        users = [j.user_id for j in jobs]
        bodies = [_ENCODER.encode(j) for j in jobs]
        with translated("append submissions"):
            await self._connected().execute(_APPEND, ids, users, bodies)

    async def move_to_store(self, limit: int) -> int:
        with translated("move submissions"):
            async with self._connected().acquire() as conn, conn.transaction():
                rows = await conn.fetch(_TAKE, limit)
                if not rows:
                    return 0
                jobs = [_DECODER.decode(r[0]) for r in rows]
                jobs.sort(key=lambda j: j.job_id)  # ids are time-ordered: submission order
                await conn.execute(sql.INSERT_JOBS + " ON CONFLICT DO NOTHING", *job_args(jobs))
        return len(jobs)

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        with translated("get submission"):
            body = await self._connected().fetchval(_GET, job_id, user_id)
        return None if body is None else _DECODER.decode(body)

    def _connected(self) -> Any:
        return self._pool.get()
