"""``PostgresStore.list_jobs``: one page of a user's jobs, filtered, and their newest runs.

As in the SQLite store, the page walks the ``jobs_user (user_id, seq)`` index in order and
tests each of the user's jobs against the filters, stopping at a full page: no filter needs
an index of its own, and the worst case (a filter few jobs pass) reads the user's own jobs
once. The newest runs of the whole page come from one statement, a LATERAL join per listed
job through the ``(job_id, scheduled_for, attempt)`` unique index, newest first.
"""

from __future__ import annotations

from typing import Any

from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.rows import job_from_record
from chronoq.adapters.postgres.sql import JOB_COLUMNS
from chronoq.domain.states import RunStatus
from chronoq.ports.jobs import (
    JobKind,
    JobPage,
    ListJobsParams,
    RunBrief,
    cursor_position,
    search_id_bounds,
)

_SELECT = "SELECT seq, " + JOB_COLUMNS + " FROM jobs WHERE user_id = $1 AND seq > $2"

RECENT_RUNS = (
    "SELECT p.job_id, r.run_id, r.status, r.scheduled_for, r.attempt, r.started_at,"
    " r.completed_at FROM unnest($1::uuid[]) WITH ORDINALITY AS p(job_id, ord)"
    " CROSS JOIN LATERAL (SELECT run_id, status, scheduled_for, attempt, started_at,"
    " completed_at FROM job_runs WHERE job_id = p.job_id"
    " ORDER BY scheduled_for DESC, attempt DESC LIMIT $2) AS r"
    " ORDER BY p.ord, r.scheduled_for DESC, r.attempt DESC"
)


async def list_jobs(conn: Any, params: ListJobsParams) -> JobPage:
    """``conn``: the store's pool (each statement takes its own connection)."""
    sql, args = list_statement(params, cursor_position(params.cursor))
    with translated("list_jobs"):
        rows = await conn.fetch(sql, *args)
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    cursor = str(rows[-1][0]) if more and rows else None
    jobs = [job_from_record(r, 1) for r in rows]
    recent: dict[str, list[RunBrief]] = {}
    if params.recent_runs > 0 and jobs:
        with translated("list_jobs"):
            runs = await conn.fetch(RECENT_RUNS, [j.job_id for j in jobs], params.recent_runs)
        for job_id, run_id, status, scheduled, attempt, started, completed in runs:
            recent.setdefault(str(job_id), []).append(
                RunBrief(
                    run_id=str(run_id),
                    status=RunStatus(status),
                    scheduled_for=scheduled,
                    attempt=attempt,
                    started_at=started,
                    completed_at=completed,
                )
            )
    return JobPage(items=jobs, next_cursor=cursor, recent_runs=recent)


def list_statement(params: ListJobsParams, after: int) -> tuple[str, list[Any]]:
    """The statement names only the filters in use: each combination is planned for what
    it asks (a catch-all ``$n IS NULL OR ...`` statement gets a generic plan that costs
    twice as much per row). The id prefix is a uuid range, never ``job_id::text``."""
    sql, args = _SELECT, [params.user_id, after]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if params.statuses:
        sql += f" AND status = ANY({arg(sorted(s.value for s in params.statuses))}::text[])"
    if params.project_id is not None:
        sql += f" AND project_id = {arg(params.project_id)}"
    if params.kind is not None:
        recurring = params.kind is JobKind.RECURRING
        sql += f" AND cron_schedule IS {'NOT ' if recurring else ''}NULL"
    if params.queue is not None:
        sql += f" AND queue = {arg(params.queue)}"
    if params.search is not None:
        bounds = search_id_bounds(params.search)
        if bounds is not None and bounds[0] == bounds[1]:  # a whole id: the primary key
            sql += f" AND job_id = {arg(bounds[0])}::uuid"
        elif bounds is None:  # no id starts so: only the project part can match
            sql += f" AND strpos(project_id, {arg(params.search)}) > 0"
        else:
            low, high, text = arg(bounds[0]), arg(bounds[1]), arg(params.search)
            sql += f" AND (job_id BETWEEN {low}::uuid AND {high}::uuid"
            sql += f" OR strpos(project_id, {text}) > 0)"
    sql += f" ORDER BY seq LIMIT {arg(params.limit + 1)}"
    return sql, args
