"""``SqliteStore.list_jobs``: one page of a user's jobs, filtered, and their newest runs.

The page walks the ``jobs_user (user_id, seq)`` index in order and tests each of the
user's jobs against the filters, stopping at a full page: no filter needs an index of
its own, and the worst case (a filter few jobs pass) reads the user's own jobs once.
The newest runs of the whole page come from one statement (``_RECENT``), each job's
through the ``(job_id, scheduled_for, attempt)`` unique index, newest first.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from chronoq.adapters.sqlite.rows import JOB_COLUMNS, job_from_row
from chronoq.domain.clock import from_micros
from chronoq.domain.jobs import Job
from chronoq.domain.states import RunStatus
from chronoq.ports.jobs import JobKind, JobPage, ListJobsParams, RunBrief, search_id_bounds

_RECENT = (
    "SELECT p.value, r.run_id, r.status, r.scheduled_for, r.attempt, r.started_at,"
    " r.completed_at FROM json_each(?) AS p JOIN job_runs AS r ON r.rowid IN ("
    " SELECT rowid FROM job_runs WHERE job_id = p.value"
    " ORDER BY scheduled_for DESC, attempt DESC LIMIT ?)"
    " ORDER BY p.key, r.scheduled_for DESC, r.attempt DESC"
)


def list_jobs(conn: sqlite3.Connection, params: ListJobsParams, after: int) -> JobPage:
    sql = f"SELECT seq, {JOB_COLUMNS} FROM jobs WHERE user_id = ? AND seq > ?"
    args: list[Any] = [params.user_id, after]
    if params.statuses:
        sql += f" AND status IN ({', '.join('?' * len(params.statuses))})"
        args.extend(sorted(s.value for s in params.statuses))
    if params.project_id is not None:
        sql += " AND project_id = ?"
        args.append(params.project_id)
    if params.kind is not None:
        recurring = params.kind is JobKind.RECURRING
        sql += f" AND cron_schedule IS {'NOT ' if recurring else ''}NULL"
    if params.queue is not None:
        sql += " AND queue = ?"
        args.append(params.queue)
    if params.search is not None:
        bounds = search_id_bounds(params.search)
        if bounds is None:  # no id starts so: only the project part can match
            sql += " AND instr(project_id, ?) > 0"
            args.append(params.search)
        elif bounds[0] == bounds[1]:  # a whole id: the unique index finds it
            sql += " AND job_id = ?"
            args.append(bounds[0])
        else:
            sql += " AND (job_id BETWEEN ? AND ? OR instr(project_id, ?) > 0)"
            args.extend([*bounds, params.search])
    sql += " ORDER BY seq LIMIT ?"
    args.append(params.limit + 1)
    rows = conn.execute(sql, args).fetchall()
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    cursor = str(rows[-1][0]) if more and rows else None
    jobs = [job_from_row(r[1:]) for r in rows]
    return JobPage(
        items=jobs, next_cursor=cursor, recent_runs=_recent(conn, jobs, params.recent_runs)
    )


def _recent(conn: sqlite3.Connection, jobs: list[Job], count: int) -> dict[str, list[RunBrief]]:
    found: dict[str, list[RunBrief]] = {}
    if count <= 0 or not jobs:
        return found
    ids = json.dumps([job.job_id for job in jobs])
    for job_id, run_id, status, scheduled, attempt, started, completed in conn.execute(
        _RECENT, (ids, count)
    ):
        found.setdefault(job_id, []).append(
            RunBrief(
                run_id=run_id,
                status=RunStatus(status),
                scheduled_for=from_micros(scheduled),
                attempt=attempt,
                started_at=None if started is None else from_micros(started),
                completed_at=None if completed is None else from_micros(completed),
            )
        )
    return found
