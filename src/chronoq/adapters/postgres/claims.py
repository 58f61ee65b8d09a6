"""``claim_runs`` of ``PostgresStore`` from chosen queues and under concurrency limits
(``domain.queues``); the common claim (every queue, no limit) is ``sql.CLAIM_RUNS``.

A limited claim first takes ``LIMITS_LOCK`` (a transaction-scoped advisory lock), then
counts the RUNNING runs per (queue, user): two limited claims never count at once, and
each sees the runs the previous one leased (READ COMMITTED: every statement reads what
was committed before it began), so together they never exceed a limit. A claim from
chosen queues with no limit takes no lock. Candidates are locked ``SKIP LOCKED`` in claim
order (highest priority, then oldest); those within the limits are leased by
``CLAIM_BY_ID``, and a candidate over a limit stays QUEUED: its queue or user is
left out of the next read (``Slots``), so a full user's backlog costs one read, not one
per run.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from chronoq.adapters.postgres import sql
from chronoq.adapters.postgres.rows import aware, claimed_from_record
from chronoq.domain.jobs import ClaimedRun
from chronoq.domain.queues import Slots
from chronoq.ports.dispatch import ClaimRunsParams

LIMITS_LOCK = 0x6368726F6E7172  # "chronqr": every limited claim of the cluster takes it
_RUNNING_COUNTS = (
    "SELECT queue, user_id, count(*)::int FROM job_runs WHERE status = 'RUNNING'"
    " GROUP BY queue, user_id"
)

CLAIM_BY_ID = (
    "WITH picked AS ("
    " SELECT run_id FROM job_runs WHERE run_id = ANY($5::uuid[]) AND status = 'QUEUED'"
    " AND available_at <= $1 ORDER BY run_id FOR NO KEY UPDATE),"
    " leased AS ("
    " UPDATE job_runs r SET status = 'RUNNING', lease_owner = $2, worker_id = $2,"
    " lease_until = $3"
    " FROM picked WHERE r.run_id = picked.run_id"
    " RETURNING r.run_id, r.job_id, r.attempt, r.scheduled_for, r.available_at,"
    " r.interruptions),"
    " busy AS ("
    " UPDATE jobs SET status = 'RUNNING', updated_at = $4"
    " WHERE job_id IN (SELECT job_id FROM leased) AND status = 'PENDING')"
    " SELECT l.run_id, l.job_id, l.attempt, l.scheduled_for, l.available_at, j.payload,"
    " j.payload_ref, j.timeout_seconds, j.max_retries, j.cron_schedule, l.interruptions, "
    + sql.START_CHECK
    + " FROM leased l JOIN jobs j ON j.job_id = l.job_id ORDER BY l.available_at, l.run_id"
)
"""``sql.CLAIM_RUNS`` for the runs chosen here: the same lease (RUNNING, owner, lease, not started),
re-checked on the locked row (a run taken meanwhile is not QUEUED any more)."""


@lru_cache(maxsize=32)
def _candidates_sql(queues: int, full_queues: bool, full_users: bool) -> str:
    """One statement per shape, each planned on its own (no ``$n IS NULL OR``); its
    arguments: horizon, limit, then the values this shape names, in this order.
    ``queues``: how many the worker names (0: every queue). One queue is an equality, so
    ``runs_queued_queue`` yields its runs in claim order (no sort); several are one
    ``ANY`` (their claimable runs are sorted)."""
    where = "r.status = 'QUEUED' AND r.available_at <= $1"
    n = 2
    for used, condition in (
        (queues == 1, "r.queue = ${}"),
        (queues > 1, "r.queue = ANY(${}::text[])"),
        (full_queues, "NOT (r.queue = ANY(${}::text[]))"),
        (full_users, "NOT (r.user_id = ANY(${}::text[]))"),
    ):
        if used:
            n += 1
            where += " AND " + condition.format(n)
    return (
        "SELECT r.run_id, r.queue, r.user_id FROM job_runs r JOIN jobs j ON j.job_id = r.job_id"
        f" WHERE {where} ORDER BY r.priority DESC, r.available_at LIMIT $2"
        " FOR NO KEY UPDATE OF r, j SKIP LOCKED"
    )


async def claim_restricted(conn: Any, params: ClaimRunsParams) -> list[ClaimedRun]:
    """Inside the caller's transaction (see the module docstring)."""
    horizon = aware(params.horizon, "horizon")
    until = aware(params.lease_until, "lease_until")
    now = aware(params.now, "now")
    running: list[tuple[str, str, int]] = []
    if params.limits.any:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LIMITS_LOCK)
        running = [(r[0], r[1], r[2]) for r in await conn.fetch(_RUNNING_COUNTS)]
    slots = Slots(params.limits, running)
    queues: list[str] | str | None = None
    if params.queues is not None:
        queues = sorted(params.queues)
        queues = queues[0] if len(queues) == 1 else queues
    claimed: list[ClaimedRun] = []
    while len(claimed) < params.limit:
        want = params.limit - len(claimed)
        full_queues, full_users = slots.full_queues(), slots.full_users()
        shape = 0 if params.queues is None else len(params.queues)
        statement = _candidates_sql(shape, bool(full_queues), bool(full_users))
        lists = [x for x in (queues, full_queues, full_users) if x]
        rows = await conn.fetch(statement, horizon, want, *lists)
        ids = [r[0] for r in rows if slots.admit(r[1], r[2])]
        if ids:
            leased = await conn.fetch(CLAIM_BY_ID, horizon, params.worker_id, until, now, ids)
            claimed.extend(claimed_from_record(r) for r in leased)
        if len(rows) < want:
            break  # nothing more to look at
    return claimed
