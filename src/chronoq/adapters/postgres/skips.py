"""The fire ledger's skips (``fire_skips``, migration 008) as the store writes them.

A transaction that skips fires (``claim_due``, ``mark_started``, pause, resume)
accumulates them in a ``Skips`` and adds ``skip_ctes`` to the one statement it
writes anyway: the insert (``ON CONFLICT DO NOTHING``: a fire is skipped once)
and the per-reason totals of the rows that applied (``skip_counts``). The totals
are hot rows: written last, in reason order, so they never close a lock cycle
(see ``sql``'s locking order). With nothing skipped both are empty inserts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chronoq.domain.claims import SkipSpan
from chronoq.domain.fire_spans import SPAN_COUNT_CAP
from chronoq.domain.policies import SkipReason

TOTALS_CTE = (
    "totals AS ("
    " INSERT INTO fire_skip_totals (reason, fires)"
    " SELECT reason, sum(n) FROM skipped GROUP BY reason ORDER BY reason"
    " ON CONFLICT (reason) DO UPDATE SET fires = fire_skip_totals.fires + EXCLUDED.fires)"
)
"""Adds the rows a ``skipped`` CTE inserted (its ``RETURNING reason, n``) to the totals."""


def skip_ctes(first: int) -> str:
    """Two CTEs (``skipped``, ``totals``; join them with a comma) inserting the skips
    bound at ``$first`` .. ``$first + 8`` (``Skips.args``) and adding them to the totals."""
    p = [f"${first + i}" for i in range(9)]
    return (
        "skipped AS ("
        " INSERT INTO fire_skips (job_id, user_id, scheduled_for, last_scheduled_for,"
        " fire_count, reason, run_id, manual, recorded_at)"
        f" SELECT * FROM unnest({p[0]}::uuid[], {p[1]}::text[], {p[2]}::timestamptz[],"
        f" {p[3]}::timestamptz[], {p[4]}::bigint[], {p[5]}::text[], {p[6]}::uuid[],"
        f" {p[7]}::bool[], {p[8]}::timestamptz[])"
        f" ON CONFLICT DO NOTHING RETURNING reason, coalesce(fire_count, {SPAN_COUNT_CAP}) AS n), "
        + TOTALS_CTE
    )


@dataclass(slots=True)
class Skips:
    """Skipped fires to record, as ``skip_ctes``' column arrays."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def span(self, job_id: Any, user_id: str, span: SkipSpan, at: datetime) -> None:
        """A span ``plan_claim`` / ``plan_resume`` skipped (no run)."""
        self.rows.append(
            (job_id, user_id, span.first, span.last, span.count, span.reason.value, None, False, at)
        )

    def run(
        self,
        job_id: Any,
        user_id: str,
        scheduled_for: datetime,
        reason: SkipReason,
        run_id: Any,
        manual: bool,
        at: datetime,
    ) -> None:
        """A run refused at its start, or ended by a pause, before it ran: one fire."""
        self.rows.append(
            (job_id, user_id, scheduled_for, scheduled_for, 1, reason.value, run_id, manual, at)
        )

    def args(self) -> list[list[Any]]:
        if not self.rows:
            return [[] for _ in range(9)]
        return [list(column) for column in zip(*self.rows, strict=True)]
