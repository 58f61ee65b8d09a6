"""Per-user limit counts of ``PostgresStore`` (``domain.limits``), exact under any number
of api processes and pickers: each count runs after a per-user advisory lock, in the
transaction of the write it allows, so two writers never both see the same room.

* Inserts take ``active:`` locks, waiting, in key order (no deadlock between two
  batches); they wait for nothing else that waits for them.
* Triggers take the user's ``fires:`` lock, waiting, after their job row.
* Claims only *try* the ``fires:`` locks (they hold due job rows, ``SKIP LOCKED``):
  a user another picker or a trigger is counting right now waits for the next claim.
  So a claim never waits for a lock and no cycle can form.

Each count is a range of a partial index, built by the store where a limit is set
(``limit_indexes``; until it is valid, the count reads the heap and is as exact).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from chronoq.domain.jobs import Job
from chronoq.domain.limits import FIRE_WINDOW, check_active, check_trigger
from chronoq.domain.states import JOB_TERMINAL

_KEY = "hashtextextended($2::text || u, 0)"

LOCK_USERS = (
    "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT " + _KEY + " AS k"
    " FROM unnest($1::text[]) AS u ORDER BY k OFFSET 0) AS s"
)
"""Wait for each user's lock, in key order (``OFFSET 0`` keeps the sort below the locks)."""
TRY_LOCK_USERS = (
    "SELECT u FROM unnest($1::text[]) AS u WHERE pg_try_advisory_xact_lock(" + _KEY + ")"
)
ACTIVE_COUNTS = (
    "SELECT user_id, count(*) FROM jobs WHERE user_id = ANY($1::text[])"
    " AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED') GROUP BY user_id"
)
FIRE_COUNTS = (
    "SELECT user_id, count(*), min(triggered_at) FROM job_runs WHERE attempt = 1"
    " AND user_id = ANY($1::text[]) AND triggered_at > $2 GROUP BY user_id"
)
PRESENT = "SELECT job_id::text FROM jobs WHERE job_id = ANY($1::uuid[])"
ACTIVE = "chronoq.active:"
FIRES = "chronoq.fires:"


async def check_active_jobs(
    conn: Any, jobs: Sequence[Job], limit: int, if_absent: bool = False
) -> None:
    """Lock the batch's users, count their active jobs once each, refuse an overshoot.
    ``if_absent``: jobs whose id is stored already are not new (they will be skipped)."""
    users = list({job.user_id for job in jobs if job.status not in JOB_TERMINAL})
    if not users:
        return
    await conn.fetchval(LOCK_USERS, users, ACTIVE)
    if if_absent:
        rows = await conn.fetch(PRESENT, [job.job_id for job in jobs])
        present = {r[0] for r in rows}
        jobs = [job for job in jobs if job.job_id not in present]
    new = Counter(job.user_id for job in jobs if job.status not in JOB_TERMINAL)
    rows = await conn.fetch(ACTIVE_COUNTS, users)
    check_active(new, {r[0]: r[1] for r in rows}, limit)


async def fires_in_window(
    conn: Any, users: Sequence[str], now: datetime
) -> dict[str, tuple[int, datetime]]:
    if not users:
        return {}
    rows = await conn.fetch(FIRE_COUNTS, list(users), now - FIRE_WINDOW)
    return {r[0]: (r[1], r[2]) for r in rows}


async def lockable(conn: Any, users: Sequence[str]) -> set[str]:
    """Those of ``users`` whose fires lock this claim got (it holds them to commit)."""
    if not users:
        return set()
    return {r[0] for r in await conn.fetch(TRY_LOCK_USERS, list(users), FIRES)}


async def check_trigger_fires(conn: Any, user_id: str, now: datetime, limit: int) -> None:
    await conn.fetchval(LOCK_USERS, [user_id], FIRES)
    used, oldest = (await fires_in_window(conn, [user_id], now)).get(user_id, (0, None))
    check_trigger(used, oldest, limit, now)
