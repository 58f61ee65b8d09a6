"""``PostgresStore``'s reads of the fire ledger and its idempotency keys (a mixin, like
``outbox``): ``list_fires``, ``skip_counts``, ``job_by_idempotency_key``,
``forget_idempotency_keys``.

Every nominal fire of a job ends as a run (``job_runs``) or a skip (``fire_skips``,
written by ``skips``); ``list_fires`` merges both into one entry per fire: a fire
with a skip row is listed as the skip (with the run it refused, if any).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from chronoq.adapters.postgres import sql
from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.rows import aware, is_id, job_from_record
from chronoq.domain.jobs import Fire, Job
from chronoq.domain.policies import SkipReason
from chronoq.domain.states import RunStatus
from chronoq.ports.jobs import ListFiresParams

OWNED = "SELECT 1 FROM jobs WHERE job_id = $1 AND user_id = $2"
SKIPS_IN = (
    "SELECT s.scheduled_for, s.last_scheduled_for, s.fire_count, s.reason, s.run_id::text,"
    " s.manual, s.recorded_at, (SELECT count(*) FROM job_runs r WHERE r.job_id = s.job_id"
    " AND r.scheduled_for = s.scheduled_for)"
    " FROM fire_skips s WHERE s.job_id = $1 AND s.last_scheduled_for >= $2"
    " AND s.scheduled_for <= $3 ORDER BY s.scheduled_for LIMIT $4"
)
"""Skips overlapping ``[$2, $3]`` (a span is listed if any of its fires is inside)."""
RUNS_IN = (
    "SELECT r.scheduled_for, r.status, r.run_id::text, g.n, r.manual,"
    " coalesce(r.completed_at, r.started_at, r.triggered_at)"
    " FROM (SELECT scheduled_for, max(attempt) AS a, count(*) AS n FROM job_runs"
    " WHERE job_id = $1 AND scheduled_for >= $2 AND scheduled_for <= $3"
    " GROUP BY scheduled_for) g"
    " JOIN job_runs r ON r.job_id = $1 AND r.scheduled_for = g.scheduled_for AND r.attempt = g.a"
    " WHERE NOT EXISTS (SELECT 1 FROM fire_skips s WHERE s.job_id = r.job_id"
    " AND s.scheduled_for = r.scheduled_for)"
    " ORDER BY g.scheduled_for LIMIT $4"
)
"""Fires with runs in ``[$2, $3]``, each as its latest attempt, unless the fire is a skip.
Both read ranges of a primary or unique index (``job_runs_fire_attempt``, ``fire_skips``)."""
BY_KEY = "SELECT " + sql.JOB_COLUMNS + " FROM jobs WHERE user_id = $1 AND idempotency_key = $2"
FORGET_KEYS = (
    "UPDATE jobs SET idempotency_key = NULL, request_hash = NULL WHERE job_id IN ("
    " SELECT job_id FROM jobs WHERE idempotency_key IS NOT NULL AND created_at < $1"
    " ORDER BY created_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED)"
)
"""Oldest keys first (``jobs_idempotency_age``); a job locked right now waits for the next
pass (never a wait: retention must not stall writers)."""

PURGE_SKIPS = (
    "DELETE FROM fire_skips WHERE (job_id, scheduled_for) IN (SELECT job_id, scheduled_for"
    " FROM fire_skips WHERE recorded_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
)
"""Retention (``purge_finished``): ledger skips recorded before ``$1``, oldest index first."""


class PostgresLedger:
    """Mixed into ``PostgresStore`` (which provides ``_connected``)."""

    def _connected(self) -> Any:
        raise NotImplementedError

    async def list_fires(self, params: ListFiresParams) -> list[Fire] | None:
        if not is_id(params.job_id):
            return None
        start, end = aware(params.start, "start"), aware(params.end, "end")
        conn = self._connected()
        with translated("list_fires"):
            if await conn.fetchval(OWNED, params.job_id, params.user_id) is None:
                return None
            if params.limit <= 0:
                return []
            args = (params.job_id, start, end, params.limit)
            skips = await conn.fetch(SKIPS_IN, *args)
            runs = await conn.fetch(RUNS_IN, *args)
        fires = [_skip_fire(r) for r in skips] + [_run_fire(r) for r in runs]
        fires.sort(key=lambda f: f.scheduled_for)
        return fires[: params.limit]

    async def skip_counts(self) -> dict[SkipReason, int]:
        with translated("skip_counts"):
            rows = await self._connected().fetch("SELECT reason, fires FROM fire_skip_totals")
        return {SkipReason(reason): fires for reason, fires in rows}

    async def job_by_idempotency_key(self, user_id: str, key: str) -> Job | None:
        with translated("job_by_idempotency_key"):
            row = await self._connected().fetchrow(BY_KEY, user_id, key)
        return None if row is None else job_from_record(row)

    async def forget_idempotency_keys(self, before: datetime, limit: int = 1000) -> int:
        with translated("forget_idempotency_keys"):
            status = await self._connected().execute(FORGET_KEYS, aware(before, "before"), limit)
        return int(str(status).rsplit(" ", 1)[-1])


def _skip_fire(row: Sequence[Any]) -> Fire:
    first, last, count, reason, run_id, manual, recorded_at, attempts = row
    return Fire(
        scheduled_for=first,
        last_scheduled_for=last,
        count=count,
        outcome=RunStatus.SKIPPED.value,
        reason=SkipReason(reason),
        run_id=run_id,
        attempts=attempts,
        manual=manual,
        recorded_at=recorded_at,
    )


def _run_fire(row: Sequence[Any]) -> Fire:
    scheduled_for, status, run_id, attempts, manual, recorded_at = row
    return Fire(
        scheduled_for=scheduled_for,
        last_scheduled_for=scheduled_for,
        count=1,
        outcome=status,
        reason=None,
        run_id=run_id,
        attempts=attempts,
        manual=manual,
        recorded_at=recorded_at,
    )
