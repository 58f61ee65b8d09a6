"""Settling a job when one of its runs ends or leaves RUNNING (every path that ends one:
outcomes, lost runs, cancels, a refusal at start).

* The job moves on by ``job_status_after_run``, except that a terminal or PAUSED job
  stays, and a recurring job whose schedule has ended (no next fire, none held by a
  pause) becomes COMPLETED once a run reaches a terminal state.
* Overlap bookkeeping (``starts.gated``): if the run was the job's running run, the
  job's buffered run (if still QUEUED) becomes available now, and both are cleared.

Two statements per ended run, batched with ``executemany``: ``RELEASE_BUFFERED`` (it
reads the bookkeeping, so it goes first), then ``SETTLE_JOB``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from chronoq.domain.states import JOB_TERMINAL, RUN_TERMINAL, RunStatus, job_status_after_run

# ORs, not ``status IN (...)``: SQLite builds an IN list's lookup table anew on every
# execution, and ``executemany`` runs this once per ended run (2x the statement's cost).
_STAYS = "(" + " OR ".join(f"status = '{s}'" for s in sorted([*JOB_TERMINAL, "PAUSED"])) + ")"

RELEASE_BUFFERED = (
    "UPDATE job_runs SET available_at = ? WHERE status = 'QUEUED'"
    " AND run_id = (SELECT buffered_run_id FROM jobs WHERE job_id = ? AND running_run_id = ?)"
)
"""(now_us, job_id, run_id): the buffered run of the job whose running run ``run_id`` ended."""

SETTLE_JOB = (
    "UPDATE jobs SET status = CASE"
    f" WHEN {_STAYS} THEN status"
    " WHEN cron_schedule IS NULL THEN ?"
    " WHEN ? AND next_fire_at IS NULL AND paused_fire_at IS NULL THEN 'COMPLETED'"
    " ELSE ? END,"
    f" updated_at = CASE WHEN {_STAYS} THEN updated_at ELSE ? END,"
    " buffered_run_id = CASE WHEN running_run_id = ? THEN NULL ELSE buffered_run_id END,"
    " running_run_id = CASE WHEN running_run_id = ? THEN NULL ELSE running_run_id END"
    " WHERE job_id = ?"
)
"""Move a job on after its run ended (``settle_args``)."""

Ended = tuple[str, str, RunStatus]
"""A run that ended or left RUNNING: (job_id, run_id, status it reached)."""


def settle_args(job_id: str, run_id: str, status: RunStatus, now_us: int) -> tuple[Any, ...]:
    """``SETTLE_JOB``'s parameters after run ``run_id`` of ``job_id`` reached ``status``."""
    one_shot = job_status_after_run(status, recurring=False).value
    recurring = job_status_after_run(status, recurring=True).value
    ended = status in RUN_TERMINAL
    return (one_shot, ended, recurring, now_us, run_id, run_id, job_id)


EndedAt = tuple[str, str, RunStatus, int]
"""An ``Ended`` run with when it ended (epoch microseconds)."""


def settle(conn: sqlite3.Connection, ended: Iterable[Ended], now_us: int) -> None:
    """Release buffered runs and settle the jobs of ``ended`` runs, all ended at ``now_us``."""
    settle_each(conn, [(job, run, status, now_us) for job, run, status in ended])


def settle_each(conn: sqlite3.Connection, ended: Sequence[EndedAt]) -> None:
    """``settle`` for runs that ended at their own instants: one ``executemany`` per
    statement for a whole batch of outcomes, in the batch's order."""
    if not ended:
        return
    conn.executemany(RELEASE_BUFFERED, [(at, job, run) for job, run, _s, at in ended])
    conn.executemany(SETTLE_JOB, [settle_args(job, run, s, at) for job, run, s, at in ended])
