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
from chronoq.domain.states import RunStatus
from chronoq.ports.dispatch import OutboxParams


class MemoryOutbox:
    """Mixed into ``MemoryStore`` (which provides ``_db``)."""

    def _db(self) -> Tables:
        raise NotImplementedError

    async def unpublished_runs(self, params: OutboxParams) -> list[tuple[str, str]]:
        horizon = check_aware(params.horizon, "horizon")
        settled = check_aware(params.settled_before, "settled_before")
        republish = params.republish_before
        if republish is not None:
            republish = check_aware(republish, "republish_before")
        due = [
            run
            for run in self._db().queued()
            if run.available_at <= horizon
            and (params.queues is None or run.queue in params.queues)
            and (
                (run.published_at is None and run.triggered_at < settled)
                or (republish is not None and run.published_at is not None
                    and run.published_at < republish)
            )
        ]  # fmt: skip
        due.sort(key=lambda r: (r.available_at, r.run_id))
        return [(r.run_id, r.queue) for r in due[: params.limit]]

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

    async def queued_runs(self, run_ids: Sequence[str]) -> dict[str, datetime]:
        db = self._db()
        asked = (db.runs.get(r) for r in dict.fromkeys(run_ids))
        return {r.run_id: r.available_at for r in asked
                if r is not None and r.status is RunStatus.QUEUED}  # fmt: skip

    async def queued_queues(self, limit: int) -> list[str]:
        return sorted({run.queue for run in self._db().queued()})[:limit]
