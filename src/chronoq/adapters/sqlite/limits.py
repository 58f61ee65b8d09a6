"""Per-user limit counts of ``SqliteStore`` (``domain.limits``), inside the caller's
transaction: SQLite has one writer, so a count and the write it allows cannot be raced.

Each count is a range of a partial index, which the count creates first if it is not
there yet (``sql/011_limit_indexes_on_demand.sql``: only deployments that set a limit pay
for the indexes). The status list below is the index's, word for word (SQLite uses a
partial index only then).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from chronoq.adapters.sqlite.dispatch import marks
from chronoq.domain.clock import from_micros, to_micros
from chronoq.domain.jobs import Job
from chronoq.domain.limits import FIRE_WINDOW, check_active, check_trigger
from chronoq.domain.states import JOB_TERMINAL

_ACTIVE = "status <> 'COMPLETED' AND status <> 'FAILED' AND status <> 'CANCELLED'"
"""Spelled as ``jobs_user_active``'s predicate, so the planner uses that index."""
_ACTIVE_INDEX = f"CREATE INDEX IF NOT EXISTS jobs_user_active ON jobs (user_id) WHERE {_ACTIVE}"
_FIRES_INDEX = (
    "CREATE INDEX IF NOT EXISTS runs_user_fired ON job_runs (user_id, triggered_at)"
    " WHERE attempt = 1"
)


def check_active_jobs(
    conn: sqlite3.Connection, jobs: Sequence[Job], limit: int, if_absent: bool = False
) -> None:
    """``LimitExceededError`` if the jobs would take a user over ``limit`` active jobs:
    one count per user of the batch, not one per job. ``if_absent``: jobs whose id is
    stored already are not new (they will be skipped)."""
    if if_absent:
        ids = json.dumps([job.job_id for job in jobs])
        query = "SELECT job_id FROM jobs WHERE job_id IN (SELECT value FROM json_each(?))"
        present = {row[0] for row in conn.execute(query, (ids,))}
        jobs = [job for job in jobs if job.job_id not in present]
    new = Counter(job.user_id for job in jobs if job.status not in JOB_TERMINAL)
    if not new:
        return
    conn.execute(_ACTIVE_INDEX)
    users = sorted(new)
    rows = conn.execute(
        f"SELECT user_id, count(*) FROM jobs WHERE user_id IN ({marks(users)}) AND {_ACTIVE}"
        " GROUP BY user_id",
        users,
    ).fetchall()
    check_active(new, dict(rows), limit)


def fires_in_window(
    conn: sqlite3.Connection, users: Sequence[str], now: datetime
) -> dict[str, tuple[int, datetime]]:
    """Per user (those with any): fires made in the window ending ``now``, and the oldest."""
    if not users:
        return {}
    conn.execute(_FIRES_INDEX)
    since = to_micros(now - FIRE_WINDOW)
    rows = conn.execute(
        "SELECT user_id, count(*), min(triggered_at) FROM job_runs WHERE attempt = 1"
        f" AND user_id IN ({marks(users)}) AND triggered_at > ? GROUP BY user_id",
        [*users, since],
    ).fetchall()
    return {user: (count, from_micros(oldest)) for user, count, oldest in rows}


def check_trigger_fires(conn: sqlite3.Connection, user_id: str, now: datetime, limit: int) -> None:
    used, oldest = fires_in_window(conn, [user_id], now).get(user_id, (0, None))
    check_trigger(used, oldest, limit, now)


def active_jobs(conn: sqlite3.Connection, user_id: str) -> int:
    conn.execute(_ACTIVE_INDEX)
    query = f"SELECT count(*) FROM jobs WHERE user_id = ? AND {_ACTIVE}"
    return int(conn.execute(query, (user_id,)).fetchone()[0])
