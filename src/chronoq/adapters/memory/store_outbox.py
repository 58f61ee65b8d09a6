"""``MemoryStore``'s side of an external run queue: the ``Outbox`` port (ports.dispatch).

Mirrors ``adapters.postgres.outbox``: ``RunRow.published_at`` says whether a message
naming a QUEUED run was sent, and ``Tables`` clears it whenever a run enters QUEUED.
A mixin over ``MemoryStore._db``; each method is atomic on the event loop (no await).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from chronoq.adapters.memory.store_tables import Tables
from chronoq.domain.clock import check_aware
from chronoq.domain.jobs import ClaimedRun
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.ports.dispatch import ClaimedById, ClaimRunsParams, OutboxParams


class MemoryOutbox:
    """Mixed into ``MemoryStore`` (which provides ``_db``)."""

    def _db(self) -> Tables:
        raise NotImplementedError

    async def unpublished_runs(self, params: OutboxParams) -> list[str]:
        horizon = check_aware(params.horizon, "horizon")
        settled = check_aware(params.settled_before, "settled_before")
        republish = params.republish_before
        if republish is not None:
            republish = check_aware(republish, "republish_before")
        due = [
            run
            for run in self._db().queued()
            if run.available_at <= horizon
            and (
                (run.published_at is None and run.triggered_at < settled)
                or (republish is not None and run.published_at is not None
                    and run.published_at < republish)
            )
        ]  # fmt: skip
        due.sort(key=lambda r: (r.available_at, r.run_id))
        return [r.run_id for r in due[: params.limit]]

    async def mark_published(self, run_ids: Sequence[str], at: datetime) -> int:
        at = check_aware(at, "at")
        db = self._db()
        marked = 0
        for run_id in dict.fromkeys(run_ids):
            run = db.runs.get(run_id)
            if run is not None and run.status is RunStatus.QUEUED:
                run.published_at = at
                marked += 1
        return marked

    async def claim_runs_by_id(
        self, params: ClaimRunsParams, run_ids: Sequence[str]
    ) -> ClaimedById:
        now = check_aware(params.now, "now")
        horizon = check_aware(params.horizon, "horizon")
        until = check_aware(params.lease_until, "lease_until")
        db = self._db()
        asked = [db.runs.get(r) for r in dict.fromkeys(run_ids)]
        queued = [r for r in asked if r is not None and r.status is RunStatus.QUEUED]
        ready = sorted((r for r in queued if r.available_at <= horizon),
                       key=lambda r: (r.available_at, r.run_id))  # fmt: skip
        claimed: list[ClaimedRun] = []
        for run in ready:
            db.move(run, RunStatus.RUNNING)  # leaves the queue index (its entry goes stale)
            run.lease_owner = run.worker_id = params.worker_id
            run.lease_until = until
            run.started_at = None
            row = db.jobs[run.job_id]
            if row.job.status is JobStatus.PENDING:
                db.update_job(row, status=JobStatus.RUNNING, updated_at=now)
            claimed.append(run.claimed(row.job))
        waiting = {r.run_id: r.available_at for r in queued if r.available_at > horizon}
        return ClaimedById(claimed=claimed, waiting=waiting)
