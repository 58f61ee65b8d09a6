"""``MemoryStore``'s fire ledger and idempotency keys (ports.jobs): ``list_fires``,
``skip_counts``, ``job_by_idempotency_key``, ``forget_idempotency_keys``.

A mixin over ``MemoryStore._db``; each method is atomic on the event loop.
"""

from __future__ import annotations

from datetime import datetime

from chronoq.adapters.memory.store_rows import JobRow, RunRow
from chronoq.adapters.memory.store_skips import SkipRow
from chronoq.adapters.memory.store_tables import Tables
from chronoq.domain.clock import check_aware
from chronoq.domain.jobs import Fire, Job
from chronoq.domain.policies import SkipReason
from chronoq.domain.states import RunStatus
from chronoq.ports.jobs import ListFiresParams


class MemoryLedger:
    """Mixed into ``MemoryStore`` (which provides ``_db`` and ``_own``)."""

    def _db(self) -> Tables:
        raise NotImplementedError

    def _own(self, user_id: str, job_id: str) -> JobRow | None:
        raise NotImplementedError

    async def list_fires(self, params: ListFiresParams) -> list[Fire] | None:
        start = check_aware(params.start, "start")
        end = check_aware(params.end, "end")
        row = self._own(params.user_id, params.job_id)
        if row is None:
            return None
        db = self._db()
        fires: dict[datetime, list[RunRow]] = {}
        for run in (db.runs[run_id] for run_id in row.runs):
            fires.setdefault(run.scheduled_for, []).append(run)
        skips = db.skips.of_job(row.job.job_id)
        entries = [
            _skip_entry(skip, len(fires.get(at, ())))
            for at, skip in skips.items()
            if skip.last_scheduled_for >= start and skip.scheduled_for <= end
        ]
        entries += [
            _run_entry(runs) for at, runs in fires.items() if start <= at <= end and at not in skips
        ]
        entries.sort(key=lambda f: f.scheduled_for)
        return entries[: max(params.limit, 0)]

    async def skip_counts(self) -> dict[SkipReason, int]:
        return dict(self._db().skips.totals)

    async def job_by_idempotency_key(self, user_id: str, key: str) -> Job | None:
        db = self._db()
        job_id = db.keys.get((user_id, key))
        return None if job_id is None else db.jobs[job_id].job

    async def forget_idempotency_keys(self, before: datetime, limit: int = 1000) -> int:
        before = check_aware(before, "before")
        db = self._db()
        old = sorted(
            (row.job.created_at, job_id)
            for job_id in db.keys.values()
            if (row := db.jobs[job_id]).job.created_at < before
        )[: max(limit, 0)]
        for _, job_id in old:
            db.update_job(db.jobs[job_id], idempotency_key=None, request_hash=None)
        return len(old)


def _run_entry(runs: list[RunRow]) -> Fire:
    latest = max(runs, key=lambda r: r.attempt)
    return Fire(
        scheduled_for=latest.scheduled_for,
        last_scheduled_for=latest.scheduled_for,
        count=1,
        outcome=str(latest.status),
        reason=None,
        run_id=latest.run_id,
        attempts=len(runs),
        manual=latest.manual,
        recorded_at=latest.completed_at or latest.started_at or latest.triggered_at,
    )


def _skip_entry(skip: SkipRow, attempts: int) -> Fire:
    return Fire(
        scheduled_for=skip.scheduled_for,
        last_scheduled_for=skip.last_scheduled_for,
        count=skip.fire_count,
        outcome=str(RunStatus.SKIPPED),
        reason=skip.reason,
        run_id=skip.run_id,
        attempts=attempts,
        manual=skip.manual,
        recorded_at=skip.recorded_at,
    )
