"""``PostgresStore``'s side of an external run queue: the ``Outbox`` port (ports.dispatch).

The run table is the outbox (migration 005): ``published_at`` says whether a message
naming a QUEUED run was sent, and a trigger clears it whenever a run enters QUEUED
again. A mixin, so the store class gains these three methods without this SQL
living in the store module.

Locking follows the store's order (jobs by id, then runs by id, see ``sql``):
``claim_runs_by_id`` waits for rows another transaction holds (a message may name a
run that is being requeued right now, and skipping it would drop the message), while
``mark_published`` never waits (``SKIP LOCKED``): a skipped mark costs one extra
message, which the claim's compare-and-set turns into nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from chronoq.adapters.postgres import sql
from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.rows import aware, claimed_from_record, is_id
from chronoq.ports.dispatch import ClaimedById, ClaimRunsParams, OutboxParams

T = TypeVar("T")

UNPUBLISHED = (
    "SELECT run_id FROM ("
    " (SELECT run_id, available_at FROM job_runs WHERE status = 'QUEUED'"
    " AND published_at IS NULL AND available_at <= $1 AND triggered_at < $2"
    " ORDER BY available_at LIMIT $4)"
    " UNION ALL"
    " (SELECT run_id, available_at FROM job_runs WHERE $3::timestamptz IS NOT NULL"
    " AND status = 'QUEUED' AND published_at < $3 AND available_at <= $1"
    " ORDER BY available_at LIMIT $4)"
    ") due ORDER BY available_at LIMIT $4"
)
"""Never sent (the partial index ``runs_unpublished``), then, only when asked (``$3`` not
NULL: a one-time filter skips the scan otherwise), sent long ago and still QUEUED."""
MARK_PUBLISHED = (
    "WITH ready AS (SELECT run_id FROM job_runs WHERE run_id = ANY($1::uuid[])"
    " AND status = 'QUEUED' ORDER BY run_id FOR NO KEY UPDATE SKIP LOCKED)"
    " UPDATE job_runs r SET published_at = $2 FROM ready WHERE r.run_id = ready.run_id"
)
CLAIM_BY_ID = (
    "WITH picked AS ("
    " SELECT run_id FROM job_runs WHERE run_id = ANY($5::uuid[]) AND status = 'QUEUED'"
    " AND available_at <= $1 ORDER BY run_id FOR NO KEY UPDATE),"
    " leased AS ("
    " UPDATE job_runs r SET status = 'RUNNING', lease_owner = $2, worker_id = $2,"
    " lease_until = $3"
    " FROM picked WHERE r.run_id = picked.run_id"
    " RETURNING r.run_id, r.job_id, r.attempt, r.scheduled_for, r.available_at,"
    " r.interruptions),"
    " busy AS ("
    " UPDATE jobs SET status = 'RUNNING', updated_at = $4"
    " WHERE job_id IN (SELECT job_id FROM leased) AND status = 'PENDING')"
    " SELECT l.run_id, l.job_id, l.attempt, l.scheduled_for, l.available_at, j.payload,"
    " j.payload_ref, j.timeout_seconds, j.max_retries, j.cron_schedule, l.interruptions, "
    + sql.START_CHECK
    + " FROM leased l JOIN jobs j ON j.job_id = l.job_id ORDER BY l.available_at, l.run_id"
)
"""``sql.CLAIM_RUNS`` for named runs: the same lease (RUNNING, owner, lease, not started),
re-checked on the locked row (a run taken meanwhile is not QUEUED any more)."""
WAITING = (
    "SELECT run_id, available_at FROM job_runs WHERE run_id = ANY($1::uuid[])"
    " AND status = 'QUEUED' AND available_at > $2"
)


class PostgresOutbox:
    """Mixed into ``PostgresStore`` (which provides the two plumbing methods below)."""

    def _connected(self) -> Any:
        raise NotImplementedError

    async def _transaction(self, what: str, body: Callable[[Any], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def unpublished_runs(self, params: OutboxParams) -> list[str]:
        republish = params.republish_before
        args = (
            aware(params.horizon, "horizon"),
            aware(params.settled_before, "settled_before"),
            None if republish is None else aware(republish, "republish_before"),
            params.limit,
        )
        with translated("unpublished_runs"):
            rows = await self._connected().fetch(UNPUBLISHED, *args)
        return [str(r[0]) for r in rows]

    async def mark_published(self, run_ids: Sequence[str], at: datetime) -> int:
        ids = sorted({r for r in run_ids if is_id(r)})
        if not ids:
            return 0
        with translated("mark_published"):
            status = await self._connected().execute(MARK_PUBLISHED, ids, aware(at, "at"))
        return int(str(status).rsplit(" ", 1)[-1])

    async def claim_runs_by_id(
        self, params: ClaimRunsParams, run_ids: Sequence[str]
    ) -> ClaimedById:
        ids = sorted({r for r in run_ids if is_id(r)})  # a forged id names nothing
        if not ids:
            return ClaimedById(claimed=[], waiting={})
        horizon = aware(params.horizon, "horizon")
        args = (
            horizon,
            params.worker_id,
            aware(params.lease_until, "lease_until"),
            aware(params.now, "now"),
            ids,
        )

        async def body(conn: Any) -> ClaimedById:
            await conn.fetch(sql.LOCK_JOBS_OF_RUNS, ids)  # the store's lock order: jobs first
            rows = await conn.fetch(CLAIM_BY_ID, *args)
            waiting = await conn.fetch(WAITING, ids, horizon)
            return ClaimedById(
                claimed=[claimed_from_record(r) for r in rows],
                waiting={str(r[0]): r[1] for r in waiting},
            )

        return await self._transaction("claim_runs_by_id", body)
