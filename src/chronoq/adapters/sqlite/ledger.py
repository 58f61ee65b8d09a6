"""The fire ledger of ``SqliteStore``: skipped fires (``fire_skips``) and their totals.

Every nominal fire of a job ends as a run or as a skip (``domain.policies``). Runs are
``job_runs``; skips, alone or as spans, are ``fire_skips`` rows keyed by (job,
first fire), inserted ON CONFLICT DO NOTHING, and each insert that applied adds its
fires to ``fire_skip_totals`` in the same transaction (metrics counters: they only grow).
``list_fires`` merges both into one entry per fire.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from chronoq.domain.claims import SkipSpan
from chronoq.domain.clock import from_micros, to_micros
from chronoq.domain.fire_spans import SPAN_COUNT_CAP
from chronoq.domain.jobs import Fire
from chronoq.domain.policies import SkipReason
from chronoq.domain.states import RunStatus
from chronoq.ports.jobs import ListFiresParams

SkipRow = tuple[str, str, int, int, int | None, str, str | None, bool]
"""One skip to record: (job_id, user_id, first_us, last_us, count, reason, run_id, manual)."""

_INSERT_SKIP = (
    "INSERT INTO fire_skips (job_id, user_id, scheduled_for, last_scheduled_for, fire_count,"
    " reason, run_id, manual, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING RETURNING reason, fire_count"
)
_ADD_TOTAL = (
    "INSERT INTO fire_skip_totals (reason, fires) VALUES (?, ?)"
    " ON CONFLICT (reason) DO UPDATE SET fires = fires + excluded.fires"
)
_SKIPS_IN = (
    "SELECT s.scheduled_for, s.last_scheduled_for, s.fire_count, s.reason, s.run_id, s.manual,"
    " s.recorded_at, (SELECT count(*) FROM job_runs r WHERE r.job_id = s.job_id"
    " AND r.scheduled_for = s.scheduled_for)"
    " FROM fire_skips s WHERE s.job_id = ? AND s.last_scheduled_for >= ? AND s.scheduled_for <= ?"
    " ORDER BY s.scheduled_for LIMIT ?"
)
_RUNS_IN = (
    "SELECT r.scheduled_for, r.status, r.run_id, g.n, r.manual,"
    " coalesce(r.completed_at, r.started_at, r.triggered_at)"
    " FROM (SELECT scheduled_for, max(attempt) AS a, count(*) AS n FROM job_runs"
    " WHERE job_id = ? AND scheduled_for >= ? AND scheduled_for <= ? GROUP BY scheduled_for) g"
    " JOIN job_runs r ON r.job_id = ? AND r.scheduled_for = g.scheduled_for AND r.attempt = g.a"
    " WHERE NOT EXISTS (SELECT 1 FROM fire_skips s WHERE s.job_id = r.job_id"
    " AND s.scheduled_for = r.scheduled_for)"
    " ORDER BY g.scheduled_for LIMIT ?"
)


def span_rows(job_id: str, user_id: str, spans: Iterable[SkipSpan]) -> list[SkipRow]:
    """``SkipRow``s of a plan's spans (no run: fires skipped before they had one)."""
    return [
        (
            job_id,
            user_id,
            to_micros(s.first),
            to_micros(s.last),
            s.count,
            s.reason.value,
            None,
            False,
        )
        for s in spans
    ]


def run_skip_row(
    job_id: str, user_id: str, scheduled_us: int, reason: SkipReason, run_id: str, manual: bool
) -> SkipRow:
    """The ``SkipRow`` of a run that ended SKIPPED (one fire, its run recorded)."""
    return (job_id, user_id, scheduled_us, scheduled_us, 1, reason.value, run_id, manual)


def record_skips(conn: sqlite3.Connection, skips: Iterable[SkipRow], now_us: int) -> None:
    """Insert the skips (a fire recorded already stays as it was) and count those that
    applied in ``fire_skip_totals``."""
    totals: dict[str, int] = {}
    for row in skips:
        got = conn.execute(_INSERT_SKIP, (*row, now_us)).fetchone()
        if got is not None:
            fires = got[1] if got[1] is not None else SPAN_COUNT_CAP
            totals[got[0]] = totals.get(got[0], 0) + fires
    if totals:
        conn.executemany(_ADD_TOTAL, sorted(totals.items()))


def skip_counts(conn: sqlite3.Connection) -> dict[SkipReason, int]:
    rows = conn.execute("SELECT reason, fires FROM fire_skip_totals").fetchall()
    return {SkipReason(reason): fires for reason, fires in rows}


def list_fires(conn: sqlite3.Connection, params: ListFiresParams) -> list[Fire] | None:
    """The job's ledger in ``[start, end]``: its fires with runs and its skips, oldest first."""
    owned = conn.execute(
        "SELECT 1 FROM jobs WHERE job_id = ? AND user_id = ?", (params.job_id, params.user_id)
    ).fetchone()
    if owned is None:
        return None
    if params.limit <= 0:
        return []
    start, end = to_micros(params.start), to_micros(params.end)
    job_id = params.job_id
    skips = conn.execute(_SKIPS_IN, (job_id, start, end, params.limit)).fetchall()
    runs = conn.execute(_RUNS_IN, (job_id, start, end, job_id, params.limit)).fetchall()
    fires = [_skip_fire(r) for r in skips] + [_run_fire(r) for r in runs]
    fires.sort(key=lambda f: f.scheduled_for)
    return fires[: params.limit]


def _skip_fire(row: tuple[Any, ...]) -> Fire:
    first, last, count, reason, run_id, manual, recorded_at, attempts = row
    return Fire(
        scheduled_for=from_micros(first),
        last_scheduled_for=from_micros(last),
        count=count,
        outcome=RunStatus.SKIPPED.value,
        reason=SkipReason(reason),
        run_id=run_id,
        attempts=attempts,
        manual=bool(manual),
        recorded_at=from_micros(recorded_at),
    )


def _run_fire(row: tuple[Any, ...]) -> Fire:
    scheduled_for, status, run_id, attempts, manual, recorded_at = row
    at = from_micros(scheduled_for)
    return Fire(
        scheduled_for=at,
        last_scheduled_for=at,
        count=1,
        outcome=status,
        reason=None,
        run_id=run_id,
        attempts=attempts,
        manual=bool(manual),
        recorded_at=from_micros(recorded_at),
    )
