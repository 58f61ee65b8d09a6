"""``PostgresStore``'s side of an external run queue: the ``Outbox`` port (ports.dispatch).

The run table is the outbox (migration 005): ``published_at`` says whether a message
naming a QUEUED run was sent, and a trigger clears it whenever a run enters QUEUED
again. A mixin, so the store class gains these four methods without this SQL
living in the store module.

``mark_published`` never waits (``SKIP LOCKED``): a skipped mark costs one extra
message, which the claim's compare-and-set turns into nothing. ``queued_runs`` and
``queued_queues`` only read (workers lease with the store's own ``claim_runs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.rows import aware, is_id
from chronoq.ports.dispatch import OutboxParams

UNPUBLISHED = (
    "SELECT run_id, queue FROM ("
    " (SELECT run_id, queue, available_at FROM job_runs WHERE status = 'QUEUED'"
    " AND published_at IS NULL AND available_at <= $1 AND triggered_at < $2"
    " AND ($5::text[] IS NULL OR queue = ANY($5::text[]))"
    " ORDER BY available_at LIMIT $4)"
    " UNION ALL"
    " (SELECT run_id, queue, available_at FROM job_runs WHERE $3::timestamptz IS NOT NULL"
    " AND status = 'QUEUED' AND published_at < $3 AND available_at <= $1"
    " AND ($5::text[] IS NULL OR queue = ANY($5::text[]))"
    " ORDER BY available_at LIMIT $4)"
    ") due ORDER BY available_at LIMIT $4"
)
"""Never sent (the partial index ``runs_unpublished``), then, only when asked (``$3`` not
NULL: a one-time filter skips the scan otherwise), sent long ago and still QUEUED; of
the queues ``$5`` (NULL: every queue)."""
MARK_PUBLISHED = (
    "WITH ready AS (SELECT run_id FROM job_runs WHERE run_id = ANY($1::uuid[])"
    " AND status = 'QUEUED' ORDER BY run_id FOR NO KEY UPDATE SKIP LOCKED)"
    " UPDATE job_runs r SET published_at = $2 FROM ready WHERE r.run_id = ready.run_id"
)
QUEUED_RUNS = (
    "SELECT run_id, available_at FROM job_runs WHERE run_id = ANY($1::uuid[]) AND status = 'QUEUED'"
)
QUEUED_QUEUES = (
    "WITH RECURSIVE names AS ("
    " (SELECT queue FROM job_runs WHERE status = 'QUEUED' ORDER BY queue LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT queue FROM job_runs WHERE status = 'QUEUED' AND queue > names.queue"
    " ORDER BY queue LIMIT 1) FROM names WHERE names.queue IS NOT NULL"
    ") SELECT queue FROM names WHERE queue IS NOT NULL LIMIT $1"
)
"""The distinct queues of QUEUED runs, one index probe each (a loose scan of
``runs_queued_queue``, whose leading column is the queue), not a scan of the backlog."""


class PostgresOutbox:
    """Mixed into ``PostgresStore`` (which provides ``_connected``)."""

    def _connected(self) -> Any:
        raise NotImplementedError

    async def unpublished_runs(self, params: OutboxParams) -> list[tuple[str, str]]:
        republish = params.republish_before
        args = (
            aware(params.horizon, "horizon"),
            aware(params.settled_before, "settled_before"),
            None if republish is None else aware(republish, "republish_before"),
            params.limit,
            None if params.queues is None else list(params.queues),
        )
        with translated("unpublished_runs"):
            rows = await self._connected().fetch(UNPUBLISHED, *args)
        return [(str(r[0]), str(r[1])) for r in rows]

    async def mark_published(self, run_ids: Sequence[str], at: datetime) -> int:
        ids = sorted({r for r in run_ids if is_id(r)})
        if not ids:
            return 0
        with translated("mark_published"):
            status = await self._connected().execute(MARK_PUBLISHED, ids, aware(at, "at"))
        return int(str(status).rsplit(" ", 1)[-1])

    async def queued_runs(self, run_ids: Sequence[str]) -> dict[str, datetime]:
        ids = sorted({r for r in run_ids if is_id(r)})  # a forged id names nothing
        if not ids:
            return {}
        with translated("queued_runs"):
            rows = await self._connected().fetch(QUEUED_RUNS, ids)
        return {str(r[0]): r[1] for r in rows}

    async def queued_queues(self, limit: int) -> list[str]:
        with translated("queued_queues"):
            rows = await self._connected().fetch(QUEUED_QUEUES, limit)
        return [str(r[0]) for r in rows]
