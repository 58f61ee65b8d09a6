"""``claim_due`` of ``SqliteStore``: due fires become runs, by the schedule policies.

Each due job goes through ``claims.plan_claim``: its planned runs are inserted QUEUED
(attempt 1, available at the fire plus its jitter), its skipped spans recorded in the
fire ledger, and its next fire and ``fire_count`` set, all in the claim's transaction.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from chronoq.adapters.sqlite.dispatch import INSERT_DUE_RUN, fence_filter, marks
from chronoq.adapters.sqlite.ledger import SkipRow, record_skips, span_rows
from chronoq.adapters.sqlite.limits import fires_in_window
from chronoq.adapters.sqlite.rows import POLICY_COLUMNS, opt_micros, policies_from_row
from chronoq.domain.claims import ClaimPlan, DueJob, plan_claim
from chronoq.domain.clock import from_micros, to_micros
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Run
from chronoq.domain.limits import CLAIM_ROUNDS, Deferrals, FireBudget
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus
from chronoq.ports.dispatch import ClaimDueParams

_ADVANCE = (
    "UPDATE jobs SET next_fire_at = ?, fire_count = ?, status = coalesce(?, status),"
    " updated_at = ? WHERE job_id = ? AND next_fire_at = ?"
)


def claim_due(
    conn: sqlite3.Connection, params: ClaimDueParams, deferrals: Deferrals | None = None
) -> list[Run]:
    """Apply ``plan_claim`` to each due job, oldest fire first; the runs created. With a
    per-user fires limit, ``_claim_fairly``."""
    fence = fence_filter(conn, params)
    if fence is None or (params.shards is not None and not params.shards):
        return []
    if params.max_fires_per_minute > 0:
        return _claim_fairly(conn, params, fence, deferrals or Deferrals())
    claim = _Claim(params)
    for row in _due(conn, params, fence, params.limit, []):
        claim.add(row, params.now)
    return claim.write(conn)


def _due(
    conn: sqlite3.Connection,
    params: ClaimDueParams,
    fence: tuple[str, list[Any]],
    limit: int,
    excluded_users: list[str],
) -> list[Any]:
    sql = (
        "SELECT job_id, user_id, cron_schedule, timezone, next_fire_at, fire_count, status,"
        " queue, priority, "
        + POLICY_COLUMNS
        + " FROM jobs WHERE next_fire_at IS NOT NULL AND next_fire_at <= ?"
        " AND status <> 'PAUSED'" + fence[0]
    )
    args: list[Any] = [to_micros(params.horizon), *fence[1]]
    if params.shards is not None:
        sql += f" AND shard_id IN ({marks(params.shards)})"
        args.extend(params.shards)
    if excluded_users:
        sql += f" AND user_id NOT IN ({marks(excluded_users)})"
        args.extend(excluded_users)
    sql += " ORDER BY next_fire_at LIMIT ?"
    args.append(limit)
    return conn.execute(sql, args).fetchall()


def _claim_fairly(
    conn: sqlite3.Connection,
    params: ClaimDueParams,
    fence: tuple[str, list[Any]],
    deferrals: Deferrals,
) -> list[Run]:
    """Claim while users have budget: each round selects the oldest due jobs of users not
    yet found out of budget, counts the new users' fires once (one query), claims the
    jobs of users with budget left and leaves the others due, untouched."""
    budget = FireBudget(params.max_fires_per_minute)
    held = deferrals.held()
    used = {u: c for u, (c, _o) in fires_in_window(conn, held, params.now).items()}
    excluded = budget.hold_out(held, used)
    runs: list[Run] = []
    jobs = 0
    for _round in range(CLAIM_ROUNDS):
        want = params.limit - jobs
        rows = _due(conn, params, fence, want, excluded) if want > 0 else []
        new = budget.uncounted(row[1] for row in rows)
        budget.count(new, {u: c for u, (c, _o) in fires_in_window(conn, new, params.now).items()})
        claim = _Claim(params)
        for row in rows:
            user = row[1]
            if budget.admit(user):
                at = deferrals.claim_instant(user, from_micros(row[4]), params.now)
                budget.spend(user, claim.add(row, at), params.horizon)
        jobs += claim.jobs
        runs.extend(claim.write(conn))  # the next round sees these jobs advanced
        fresh = sorted(budget.blocked.difference(excluded))
        if len(rows) < want or not fresh:
            break
        excluded.extend(fresh)
    deferrals.update(budget, params.now)
    if params.on_deferred is not None and budget.waiting:
        params.on_deferred(budget.deferred_jobs)
    return runs


class _Claim:
    """The runs, skips and job updates of one select's claimed jobs."""

    def __init__(self, params: ClaimDueParams) -> None:
        self.now = params.now
        self.now_us = to_micros(params.now)
        self.runs: list[Run] = []
        self.new_runs: list[tuple[Any, ...]] = []
        self.skips: list[SkipRow] = []
        self.advances: list[tuple[Any, ...]] = []
        self.jobs = 0

    def add(self, row: Any, at: datetime) -> ClaimPlan:
        """Plan one due job as claimed at ``at`` (normally now); its plan."""
        job_id, user_id, cron, tz, due, fire_count, status, queue, priority = row[:9]
        due_at = from_micros(due)
        plan = plan_claim(
            DueJob(
                job_id=job_id,
                cron_schedule=cron,
                timezone=tz,
                due=due_at,
                policies=policies_from_row(row[9:]),
                fire_count=fire_count,
            ),
            at,
        )
        self.jobs += 1
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
                triggered_at=self.now,
                available_at=planned.available_at,
                queue=queue,
                priority=priority,
            )
            self.runs.append(run)
            self.new_runs.append(
                (run.run_id, job_id, user_id, sched_us, self.now_us, avail_us, queue, priority)
            )
        self.skips.extend(span_rows(job_id, user_id, plan.skips))
        new_status: str | None = None
        if plan.next_fire_at is None and not plan.runs and status not in JOB_TERMINAL:
            if cron is None:
                new_status = JobStatus.FAILED.value  # its one fire was skipped (misfire)
            elif status == JobStatus.PENDING:
                new_status = JobStatus.COMPLETED.value  # the schedule ended
        self.advances.append(
            (opt_micros(plan.next_fire_at), plan.fire_count, new_status, self.now_us, job_id, due)
        )
        return plan

    def write(self, conn: sqlite3.Connection) -> list[Run]:
        before = conn.total_changes
        conn.executemany(INSERT_DUE_RUN, self.new_runs)
        runs = self.runs
        if conn.total_changes - before != len(self.new_runs):
            runs = _inserted(conn, runs)
        record_skips(conn, self.skips, self.now_us)
        conn.executemany(_ADVANCE, self.advances)
        return runs


def _inserted(conn: sqlite3.Connection, runs: list[Run]) -> list[Run]:
    """Those of ``runs`` that were inserted. A fire that has a run already (a manual fire
    triggered at that very microsecond) keeps it: the claim must not fail for every job."""
    ids = json.dumps([r.run_id for r in runs])
    query = "SELECT run_id FROM job_runs WHERE run_id IN (SELECT value FROM json_each(?))"
    present = {row[0] for row in conn.execute(query, (ids,))}
    return [r for r in runs if r.run_id in present]
