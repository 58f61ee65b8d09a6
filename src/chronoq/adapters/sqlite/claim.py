"""``claim_due`` of ``SqliteStore``: due fires become runs, by the schedule policies.

Each due job goes through ``claims.plan_claim``: its planned runs are inserted QUEUED
(attempt 1, available at the fire plus its jitter), its skipped spans recorded in the
fire ledger, and its next fire and ``fire_count`` set, all in the claim's transaction.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from chronoq.adapters.sqlite.dispatch import INSERT_RUN, fence_filter, marks
from chronoq.adapters.sqlite.ledger import SkipRow, record_skips, span_rows
from chronoq.adapters.sqlite.rows import POLICY_COLUMNS, opt_micros, policies_from_row
from chronoq.domain.claims import DueJob, plan_claim
from chronoq.domain.clock import from_micros, to_micros
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Run
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus
from chronoq.ports.dispatch import ClaimDueParams

_ADVANCE = (
    "UPDATE jobs SET next_fire_at = ?, fire_count = ?, status = coalesce(?, status),"
    " updated_at = ? WHERE job_id = ? AND next_fire_at = ?"
)


def claim_due(conn: sqlite3.Connection, params: ClaimDueParams) -> list[Run]:
    """Apply ``plan_claim`` to each due job, oldest fire first; the runs created."""
    fence = fence_filter(conn, params)
    if fence is None or (params.shards is not None and not params.shards):
        return []
    now_us, horizon = to_micros(params.now), to_micros(params.horizon)
    sql = (
        "SELECT job_id, user_id, cron_schedule, timezone, next_fire_at, fire_count, status, "
        + POLICY_COLUMNS
        + " FROM jobs WHERE next_fire_at IS NOT NULL AND next_fire_at <= ?"
        " AND status <> 'PAUSED'" + fence[0]
    )
    args: list[Any] = [horizon, *fence[1]]
    if params.shards is not None:
        sql += f" AND shard_id IN ({marks(params.shards)})"
        args.extend(params.shards)
    sql += " ORDER BY next_fire_at LIMIT ?"
    args.append(params.limit)
    runs: list[Run] = []
    new_runs: list[tuple[Any, ...]] = []
    skips: list[SkipRow] = []
    advances: list[tuple[Any, ...]] = []
    for row in conn.execute(sql, args).fetchall():
        job_id, user_id, cron, tz, due, fire_count, status = row[:7]
        due_at = from_micros(due)
        plan = plan_claim(
            DueJob(
                job_id=job_id,
                cron_schedule=cron,
                timezone=tz,
                due=due_at,
                policies=policies_from_row(row[7:]),
                fire_count=fire_count,
            ),
            params.now,
        )
        for planned in plan.runs:
            # Most runs are the due fire, unmoved: its stored form is at hand (hot path).
            sched_us = due if planned.scheduled_for is due_at else to_micros(planned.scheduled_for)
            avail_us = due if planned.available_at is due_at else to_micros(planned.available_at)
            run = Run(
                run_id=new_id(),
                job_id=job_id,
                user_id=user_id,
                scheduled_for=planned.scheduled_for,
                attempt=1,
                status=RunStatus.QUEUED,
                triggered_at=params.now,
                available_at=planned.available_at,
            )
            runs.append(run)
            new_runs.append(
                (
                    run.run_id,
                    job_id,
                    user_id,
                    sched_us,
                    1,
                    now_us,
                    avail_us,
                    0,
                    False,
                )
            )
        skips.extend(span_rows(job_id, user_id, plan.skips))
        new_status: str | None = None
        if plan.next_fire_at is None and not plan.runs and status not in JOB_TERMINAL:
            if cron is None:
                new_status = JobStatus.FAILED.value  # its one fire was skipped (misfire)
            elif status == JobStatus.PENDING:
                new_status = JobStatus.COMPLETED.value  # the schedule ended
        advances.append(
            (opt_micros(plan.next_fire_at), plan.fire_count, new_status, now_us, job_id, due)
        )
    before = conn.total_changes
    conn.executemany(INSERT_RUN + " ON CONFLICT DO NOTHING", new_runs)
    if conn.total_changes - before != len(new_runs):
        runs = _inserted(conn, runs)
    record_skips(conn, skips, now_us)
    conn.executemany(_ADVANCE, advances)
    return runs


def _inserted(conn: sqlite3.Connection, runs: list[Run]) -> list[Run]:
    """Those of ``runs`` that were inserted. A fire that has a run already (a manual fire
    triggered at that very microsecond) keeps it: the claim must not fail for every job."""
    ids = json.dumps([r.run_id for r in runs])
    query = "SELECT run_id FROM job_runs WHERE run_id IN (SELECT value FROM json_each(?))"
    present = {row[0] for row in conn.execute(query, (ids,))}
    return [r for r in runs if r.run_id in present]
