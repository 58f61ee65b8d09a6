"""The memory store's ``fire_skips`` and ``fire_skip_totals`` tables (the ledger's skips).

One row per skipped span, keyed by ``(job_id, scheduled_for)`` (its first fire); a
second insert for the same key does nothing (``ON CONFLICT DO NOTHING``), and only an
insert that applied adds to the per-reason totals, which only grow (metrics counters).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from chronoq.domain.claims import SkipSpan
from chronoq.domain.fire_spans import SPAN_COUNT_CAP
from chronoq.domain.policies import SkipReason


@dataclass(frozen=True, slots=True, kw_only=True)
class SkipRow:
    job_id: str
    user_id: str
    scheduled_for: datetime
    last_scheduled_for: datetime
    fire_count: int | None
    """Nominal fires the span covers; None: more than could be counted."""
    reason: SkipReason
    run_id: str | None
    """The run refused at its start (or skipped by a pause), if the fire had one."""
    manual: bool
    recorded_at: datetime


class SkipTable:
    """Skip rows per job, and the per-reason totals."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[datetime, SkipRow]] = {}
        self.totals: dict[SkipReason, int] = {}

    def insert(self, row: SkipRow) -> bool:
        """Insert unless the fire has a row already; whether it applied (totals too)."""
        rows = self._rows.setdefault(row.job_id, {})
        if row.scheduled_for in rows:
            return False
        rows[row.scheduled_for] = row
        added = row.fire_count if row.fire_count is not None else SPAN_COUNT_CAP
        self.totals[row.reason] = self.totals.get(row.reason, 0) + added
        return True

    def insert_span(
        self, *, job_id: str, user_id: str, span: SkipSpan, recorded_at: datetime
    ) -> bool:
        return self.insert(
            SkipRow(
                job_id=job_id,
                user_id=user_id,
                scheduled_for=span.first,
                last_scheduled_for=span.last,
                fire_count=span.count,
                reason=span.reason,
                run_id=None,
                manual=False,
                recorded_at=recorded_at,
            )
        )

    def of_job(self, job_id: str) -> dict[datetime, SkipRow]:
        return self._rows.get(job_id, {})

    def drop_job(self, job_id: str) -> int:
        return len(self._rows.pop(job_id, {}))

    def purge_before(self, before: datetime) -> int:
        """Delete rows recorded before ``before`` (retention); the totals stay."""
        gone = 0
        for job_id in list(self._rows):
            rows = self._rows[job_id]
            old = [at for at, row in rows.items() if row.recorded_at < before]
            for at in old:
                del rows[at]
            gone += len(old)
            if not rows:
                del self._rows[job_id]
        return gone

    def __iter__(self) -> Iterator[SkipRow]:
        for rows in self._rows.values():
            yield from rows.values()
