"""``mark_started`` of ``SqliteStore``: runs pass ``starts.plan_start`` as they start.

Fast path (the embedded hot path, thousands of starts a second): when no run of the
batch belongs to a gated job (``starts.gated``) and none has a start deadline, one
batch UPDATE marks them all started, as before policies existed. Otherwise the runs and
their jobs' overlap bookkeeping are read in a few batch queries, each run is decided in
the order asked (each decision updating what the next run of the same job sees), and
the decisions are written with one ``executemany`` per kind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from chronoq.adapters.sqlite.dispatch import ids_in_chunks, in_asked_order, marks
from chronoq.adapters.sqlite.ledger import SkipRow, record_skips, run_skip_row
from chronoq.adapters.sqlite.rows import POLICY_COLUMNS, policies_from_row
from chronoq.adapters.sqlite.settle import Ended, settle
from chronoq.domain.clock import from_micros
from chronoq.domain.policies import SkipReason
from chronoq.domain.starts import StartAction, StartingRun, gated, plan_start
from chronoq.domain.states import RunStatus

_CANDIDATES = (
    "SELECT r.run_id, r.job_id, r.user_id, r.scheduled_for, r.attempt, r.manual, r.lease_until,"
    " j.cron_schedule IS NOT NULL, j.running_run_id, j.buffered_run_id, "
    + POLICY_COLUMNS
    + " FROM job_runs r JOIN jobs j ON j.job_id = r.job_id WHERE r.run_id IN ({ids})"
    " AND r.status = 'RUNNING' AND r.lease_owner = ? AND r.started_at IS NULL"
)
_START_ALL = (
    "UPDATE job_runs SET started_at = ? WHERE run_id IN ({ids})"
    " AND status = 'RUNNING' AND lease_owner = ? AND started_at IS NULL RETURNING run_id"
)
_START = "UPDATE job_runs SET started_at = ? WHERE run_id = ?"
_SKIP = (
    "UPDATE job_runs SET status = 'SKIPPED', completed_at = ?, lease_owner = NULL,"
    " lease_until = NULL, error_message = ? WHERE run_id = ?"
)
_BUFFER = (
    "UPDATE job_runs SET status = 'QUEUED', lease_owner = NULL, lease_until = NULL,"
    " worker_id = NULL, started_at = NULL, available_at = ? WHERE run_id = ?"
)
_CANCEL = "UPDATE job_runs SET cancel_requested = 1 WHERE run_id = ? AND status = 'RUNNING'"
_BOOKKEEPING = "UPDATE jobs SET running_run_id = ?, buffered_run_id = ? WHERE job_id = ?"
_NO_LEASE_WAIT = timedelta(seconds=1)
"""A buffered run whose running run has no lease is available this long after ``at``."""


@dataclass(slots=True)
class _Job:
    """A job's overlap bookkeeping as this batch sees it (checked, then updated)."""

    running: str | None
    running_lease: int | None
    buffered: str | None
    changed: bool = False


@dataclass(slots=True)
class _Writes:
    starts: list[tuple[Any, ...]] = field(default_factory=list)
    skipped: list[tuple[Any, ...]] = field(default_factory=list)
    skips: list[SkipRow] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)
    buffers: list[tuple[Any, ...]] = field(default_factory=list)
    cancels: list[tuple[Any, ...]] = field(default_factory=list)

    def skip(self, row: tuple[Any, ...], reason: SkipReason, at_us: int) -> None:
        """The run (a ``_CANDIDATES`` row) ends SKIPPED for ``reason``, in the ledger too."""
        run_id, job_id, user_id, scheduled_us, _attempt, manual = row[:6]
        self.skipped.append((at_us, f"skipped: {reason}", run_id))
        self.skips.append(run_skip_row(job_id, user_id, scheduled_us, reason, run_id, bool(manual)))
        if reason is not SkipReason.OVERLAP:  # else its running run keeps the job RUNNING
            self.ended.append((job_id, run_id, RunStatus.SKIPPED))


def mark_started(
    conn: sqlite3.Connection, worker_id: str, run_ids: Sequence[str], at_us: int
) -> list[str]:
    """Start, skip or buffer the worker's RUNNING, not yet started runs; the started ones."""
    rows: dict[str, tuple[Any, ...]] = {}
    for chunk in ids_in_chunks(run_ids):
        sql = _CANDIDATES.format(ids=marks(chunk))
        rows.update((r[0], r) for r in conn.execute(sql, (*chunk, worker_id)))
    if not rows:
        return []
    if not any(_needs_plan(row) for row in rows.values()):
        return _start_all(conn, worker_id, run_ids, at_us)
    jobs = _bookkeeping(conn, rows.values())
    writes = _Writes()
    started: set[str] = set()
    at = from_micros(at_us)
    # Oldest fire first: of two runs of one job in one batch, the older is "the previous run".
    for run_id, row in sorted(rows.items(), key=lambda item: (item[1][3], item[1][4])):
        job_id, _user, scheduled_us, attempt, manual, lease_until, recurring = row[1:8]
        policies = policies_from_row(row[10:])
        job = jobs[job_id]
        plan = plan_start(
            StartingRun(
                run_id=run_id,
                job_id=job_id,
                scheduled_for=from_micros(scheduled_us),
                attempt=attempt,
                manual=bool(manual),
                recurring=bool(recurring),
                policies=policies,
                running_run_id=job.running if job.running != run_id else None,
                buffered_run_id=job.buffered,
            ),
            at,
        )
        is_gated = gated(bool(recurring), policies)
        if plan.action is StartAction.START:
            started.add(run_id)
            writes.starts.append((at_us, run_id))
            if is_gated:
                job.running, job.running_lease, job.changed = run_id, lease_until, True
                if job.buffered == run_id:
                    job.buffered = None
        elif plan.action is StartAction.SKIP:
            assert plan.reason is not None
            writes.skip(row, plan.reason, at_us)
            if job.buffered == run_id:
                job.buffered, job.changed = None, True
        else:  # BUFFER, or CANCEL_PREVIOUS (which buffers too)
            if plan.action is StartAction.CANCEL_PREVIOUS and job.running is not None:
                writes.cancels.append((job.running,))
            wait = job.running_lease
            writes.buffers.append((wait if wait is not None else at_us + 1_000_000, run_id))
            job.buffered, job.changed = run_id, True
    conn.executemany(_START, writes.starts)
    conn.executemany(_SKIP, writes.skipped)
    conn.executemany(_BUFFER, writes.buffers)
    conn.executemany(_CANCEL, writes.cancels)
    conn.executemany(
        _BOOKKEEPING,
        [(j.running, j.buffered, job_id) for job_id, j in jobs.items() if j.changed],
    )
    record_skips(conn, writes.skips, at_us)
    settle(conn, writes.ended, at_us)
    return in_asked_order(run_ids, started)


def _needs_plan(row: tuple[Any, ...]) -> bool:
    """Whether this run must pass ``plan_start``: a gated job, or a start deadline."""
    recurring, overlap, deadline = row[7], row[10], row[13]
    return deadline is not None or (bool(recurring) and overlap != "allow")


def _start_all(
    conn: sqlite3.Connection, worker_id: str, run_ids: Sequence[str], at_us: int
) -> list[str]:
    started: set[str] = set()
    for chunk in ids_in_chunks(run_ids):
        sql = _START_ALL.format(ids=marks(chunk))
        started.update(r[0] for r in conn.execute(sql, (at_us, *chunk, worker_id)))
    return in_asked_order(run_ids, started)


def _bookkeeping(conn: sqlite3.Connection, rows: Any) -> dict[str, _Job]:
    """Each job's running and buffered run, counted only if they still are (the running
    one RUNNING and started, the buffered one QUEUED)."""
    named: dict[str, tuple[str | None, str | None]] = {r[1]: (r[8], r[9]) for r in rows}
    refs = [ref for pair in named.values() for ref in pair if ref is not None]
    seen: dict[str, tuple[str, bool, int | None]] = {}
    for chunk in ids_in_chunks(refs):
        sql = (
            "SELECT run_id, status, started_at IS NOT NULL, lease_until FROM job_runs"
            f" WHERE run_id IN ({marks(chunk)})"
        )
        seen.update((r[0], (r[1], bool(r[2]), r[3])) for r in conn.execute(sql, chunk))
    jobs: dict[str, _Job] = {}
    for job_id, (running, buffered) in named.items():
        run = seen.get(running) if running is not None else None
        live = run is not None and run[0] == RunStatus.RUNNING and run[1]
        queued = buffered is not None and seen.get(buffered, ("",))[0] == RunStatus.QUEUED
        jobs[job_id] = _Job(
            running=running if live else None,
            running_lease=run[2] if live and run is not None else None,
            buffered=buffered if queued else None,
        )
    return jobs
