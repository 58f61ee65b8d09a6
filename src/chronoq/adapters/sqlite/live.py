"""Live output of running runs (``Dispatch.put_live_outputs``, ``JobStore.live_output``).

One row per running run in ``live_outputs`` (migration 009), replaced whole on each put,
compare-and-set on (RUNNING, lease owner, attempt) through the join on ``job_runs``.
The transactions that move runs out of RUNNING (``complete_runs``, ``lost``) delete
their rows (``forget_live``: one check per batch while no run has a window).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from chronoq.domain.live_output import LiveOutput, RunLive

_PUT = (
    "INSERT INTO live_outputs (run_id, attempt, start_offset, end_offset, output)"
    " SELECT run_id, attempt, ?, ?, ? FROM job_runs"
    " WHERE run_id = ? AND status = 'RUNNING' AND lease_owner = ? AND attempt = ?"
    " ON CONFLICT (run_id) DO UPDATE SET attempt = excluded.attempt,"
    " start_offset = excluded.start_offset, end_offset = excluded.end_offset,"
    " output = excluded.output"
    " RETURNING run_id"
)

_READ = (
    "SELECT r.job_id, r.attempt, r.status, r.exit_code, r.error_message,"
    " l.start_offset, CASE WHEN l.end_offset > ? THEN l.output END FROM job_runs r"
    " LEFT JOIN live_outputs l ON l.run_id = r.run_id AND l.attempt = r.attempt"
    " AND r.status = 'RUNNING'"
    " WHERE r.run_id = ? AND r.user_id = ?"
)


def put_live_outputs(
    conn: sqlite3.Connection, worker_id: str, outputs: Sequence[LiveOutput]
) -> list[bool]:
    applied: list[bool] = []
    for o in outputs:
        args = (o.start, o.end, o.text, o.run_id, worker_id, o.attempt)
        row = conn.execute(_PUT, args).fetchone()
        applied.append(row is not None)
    return applied


def live_output(conn: sqlite3.Connection, user_id: str, run_id: str, after: int) -> RunLive | None:
    row = conn.execute(_READ, (after, run_id, user_id)).fetchone()
    if row is None:
        return None
    return RunLive.of(run_id, *row)


def forget_live(conn: sqlite3.Connection, run_ids: Sequence[str]) -> None:
    """Drop the windows of runs that left RUNNING (a no-op read when none is kept)."""
    if conn.execute("SELECT EXISTS (SELECT 1 FROM live_outputs)").fetchone()[0]:
        conn.executemany("DELETE FROM live_outputs WHERE run_id = ?", [(r,) for r in run_ids])
