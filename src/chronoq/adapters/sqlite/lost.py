"""Runs lost with their worker: ``reap_lost`` and ``release_runs`` of ``SqliteStore``.

Both find RUNNING runs and apply THE rule, ``domain.states.lost_run``, to each:

* REQUEUE (never started) -> the same row QUEUED again, lease and start cleared,
  ``available_at`` unchanged; no attempt used. Its job RUNNING -> PENDING.
* INTERRUPT (started, budget left) -> INTERRUPTED with the reason, and a new row
  attempt + 1 with ``interruptions`` + 1, QUEUED at ``retry_at``.
* DEAD (started, budget spent) -> DEAD, ``LOST_TOO_OFTEN``.
* CANCEL (its cancel was requested) -> CANCELLED, as cancel_job words it.

Every job then settles with ``job_status_after_run``. Statements are batched by
decision (``executemany``), so reaping many runs is a handful of statements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chronoq.adapters.sqlite.dispatch import INSERT_RUN, ids_in_chunks, marks
from chronoq.adapters.sqlite.jobs import CANCELLED_BY_USER
from chronoq.adapters.sqlite.live import forget_live
from chronoq.adapters.sqlite.settle import Ended, settle
from chronoq.domain.clock import to_micros
from chronoq.domain.ids import new_id
from chronoq.domain.states import (
    LOST_AT_SHUTDOWN,
    LOST_TO_LEASE,
    LOST_TO_MEMBERSHIP,
    LOST_TOO_OFTEN,
    LostRun,
    RunStatus,
    lost_run,
    transition,
)
from chronoq.ports.dispatch import ReapParams, ReleaseParams

_STATUS = {
    decision: transition(RunStatus.RUNNING, status)
    for decision, status in {
        LostRun.REQUEUE: RunStatus.QUEUED,
        LostRun.INTERRUPT: RunStatus.INTERRUPTED,
        LostRun.DEAD: RunStatus.DEAD,
        LostRun.CANCEL: RunStatus.CANCELLED,
    }.items()
}
"""Where each decision moves the lost run (checked against the state table at import)."""

_SELECT_LOST = (
    "SELECT r.run_id, r.job_id, r.user_id, r.scheduled_for, r.attempt, r.interruptions,"
    " r.started_at IS NOT NULL, r.cancel_requested OR j.status = 'CANCELLED', r.lease_owner,"
    " r.manual"
    " FROM job_runs r JOIN jobs j ON j.job_id = r.job_id WHERE r.status = 'RUNNING'"
)
_REQUEUE = (
    "UPDATE job_runs SET status = 'QUEUED', lease_owner = NULL, lease_until = NULL,"
    " worker_id = NULL, started_at = NULL WHERE run_id = ? AND status = 'RUNNING'"
)
_JOB_BACK_TO_PENDING = (
    "UPDATE jobs SET status = 'PENDING', updated_at = ? WHERE job_id = ? AND status = 'RUNNING'"
)
_END = (
    "UPDATE job_runs SET status = ?, completed_at = ?, error_message = ?, lease_owner = NULL,"
    " lease_until = NULL WHERE run_id = ? AND status = 'RUNNING'"
)


@dataclass(frozen=True, slots=True)
class _Lost:
    run_id: str
    job_id: str
    user_id: str
    scheduled_for: int
    attempt: int
    interruptions: int
    started: bool
    cancelled: bool
    owner: str | None
    manual: bool

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> _Lost:
        (
            run_id,
            job_id,
            user_id,
            scheduled_for,
            attempt,
            interruptions,
            started,
            cancelled,
            owner,
            manual,
        ) = row
        return cls(
            run_id=run_id,
            job_id=job_id,
            user_id=user_id,
            scheduled_for=scheduled_for,
            attempt=attempt,
            interruptions=interruptions,
            started=bool(started),
            cancelled=bool(cancelled),
            owner=owner,
            manual=bool(manual),
        )


def reap_lost(conn: sqlite3.Connection, params: ReapParams) -> int:
    """End up to ``limit`` runs that are lost (expired lease, owner not live, expire_all)."""
    live = params.live_workers
    sql = _SELECT_LOST
    args: list[Any] = []
    if not params.expire_all:
        lost_if = ["r.lease_until < ?"]
        args.append(to_micros(params.now))
        if live is not None:
            owners = sorted(live)
            lost_if.append(f"r.lease_owner NOT IN ({marks(owners)})" if owners else "1")
            args.extend(owners)
        sql += f" AND ({' OR '.join(lost_if)})"
    rows = conn.execute(sql + " LIMIT ?", (*args, params.limit)).fetchall()

    def reason(run: _Lost) -> str:
        gone = live is not None and run.owner not in live
        return LOST_TO_MEMBERSHIP if gone else LOST_TO_LEASE

    return _end_lost(
        conn,
        [_Lost.of(r) for r in rows],
        now_us=to_micros(params.now),
        retry_us=to_micros(params.retry_at),
        max_interruptions=params.max_interruptions,
        reason=reason,
    )


def release_runs(conn: sqlite3.Connection, params: ReleaseParams) -> int:
    """Hand back the listed runs RUNNING under ``worker_id`` (graceful stop)."""
    lost: list[_Lost] = []
    for chunk in ids_in_chunks(params.run_ids):
        rows = conn.execute(
            _SELECT_LOST + f" AND r.lease_owner = ? AND r.run_id IN ({marks(chunk)})",
            (params.worker_id, *chunk),
        ).fetchall()
        lost.extend(_Lost.of(r) for r in rows)
    now_us = to_micros(params.now)
    return _end_lost(
        conn,
        lost,
        now_us=now_us,
        retry_us=now_us,  # a clean hand-back: the next attempt may start at once
        max_interruptions=params.max_interruptions,
        reason=lambda _run: LOST_AT_SHUTDOWN,
    )


def _end_lost(
    conn: sqlite3.Connection,
    runs: list[_Lost],
    *,
    now_us: int,
    retry_us: int,
    max_interruptions: int,
    reason: Callable[[_Lost], str],
) -> int:
    """Apply ``lost_run`` to each of ``runs`` (all RUNNING, read in this transaction)."""
    requeue: list[_Lost] = []
    ends: list[tuple[Any, ...]] = []
    retries: list[tuple[Any, ...]] = []
    settles: list[Ended] = []
    for run in runs:
        decision = lost_run(
            started=run.started,
            interruptions=run.interruptions,
            max_interruptions=max_interruptions,
            cancelled=run.cancelled,
        )
        status = _STATUS[decision]
        if decision is LostRun.REQUEUE:
            requeue.append(run)
            continue
        if decision is LostRun.INTERRUPT:
            error = reason(run)
            retries.append(_next_attempt(run, now_us, retry_us))
        else:
            error = LOST_TOO_OFTEN if decision is LostRun.DEAD else CANCELLED_BY_USER
        ends.append((status.value, now_us, error, run.run_id))
        settles.append((run.job_id, run.run_id, status))
    conn.executemany(_REQUEUE, [(r.run_id,) for r in requeue])
    conn.executemany(_JOB_BACK_TO_PENDING, [(now_us, r.job_id) for r in requeue])
    conn.executemany(_END, ends)
    conn.executemany(INSERT_RUN, retries)
    settle(conn, settles, now_us)
    forget_live(conn, [r.run_id for r in runs])
    return len(runs)


def _next_attempt(run: _Lost, now_us: int, retry_us: int) -> tuple[Any, ...]:
    """``INSERT_RUN``'s parameters for the attempt after an interrupted one."""
    return (
        new_id(),
        run.job_id,
        run.user_id,
        run.scheduled_for,
        run.attempt + 1,
        now_us,
        retry_us,
        run.interruptions + 1,
        run.manual,
    )
