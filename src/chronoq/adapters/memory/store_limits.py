"""``MemoryStore``'s per-user limits (``domain.limits``): the counts the SQL stores make
with their partial indexes, and the fair claim. Atomic on the event loop like the rest
of the store (no await)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime

from chronoq.adapters.memory import store_policies
from chronoq.adapters.memory.store_tables import Tables
from chronoq.domain.jobs import Job, Run
from chronoq.domain.limits import (
    CLAIM_ROUNDS,
    FIRE_WINDOW,
    Deferrals,
    FireBudget,
    check_active,
    check_trigger,
)
from chronoq.domain.states import JOB_TERMINAL
from chronoq.ports.dispatch import ClaimDueParams


def check_active_jobs(db: Tables, jobs: Sequence[Job], limit: int) -> None:
    new = Counter(job.user_id for job in jobs if job.status not in JOB_TERMINAL)
    active = {
        user: sum(1 for _p, job in db.user_jobs(user, 0) if job.status not in JOB_TERMINAL)
        for user in new
    }
    check_active(new, active, limit)


def fires_in_window(
    db: Tables, users: Collection[str], now: datetime
) -> dict[str, tuple[int, datetime]]:
    since = now - FIRE_WINDOW
    found: dict[str, tuple[int, datetime]] = {}
    for run in db.runs.values():
        if run.attempt == 1 and run.user_id in users and run.triggered_at > since:
            count, oldest = found.get(run.user_id, (0, run.triggered_at))
            found[run.user_id] = (count + 1, min(oldest, run.triggered_at))
    return found


def check_trigger_fires(db: Tables, user_id: str, now: datetime, limit: int) -> None:
    used, oldest = fires_in_window(db, {user_id}, now).get(user_id, (0, None))
    check_trigger(used, oldest, limit, now)


def claim_fairly(
    db: Tables,
    params: ClaimDueParams,
    shards: set[int] | None,
    now: datetime,
    horizon: datetime,
    deferrals: Deferrals,
) -> list[Run]:
    """``claim_due`` with a per-user fires limit, round by round as ``sqlite.claim`` does."""
    budget = FireBudget(params.max_fires_per_minute)
    held = deferrals.held()
    used = {u: count for u, (count, _o) in fires_in_window(db, set(held), now).items()}
    excluded = set(budget.hold_out(held, used))
    runs: list[Run] = []
    jobs = 0
    for _round in range(CLAIM_ROUNDS):
        want = params.limit - jobs
        taken = db.take_due(shards, horizon, want, excluded) if want > 0 else []
        new = budget.uncounted(row.job.user_id for row in taken)
        counts = fires_in_window(db, set(new), now)
        budget.count(new, {user: count for user, (count, _o) in counts.items()})
        admitted = []
        for row in taken:
            user = row.job.user_id
            if not budget.admit(user):
                db.untake_due([row])  # stays due, untouched
                continue
            assert row.job.next_fire_at is not None
            at = deferrals.claim_instant(user, row.job.next_fire_at, now)
            plan = store_policies.plan_due(db, row, at)
            budget.spend(user, plan, horizon)
            admitted.append((row, plan))
        for row, plan in admitted:
            runs.extend(store_policies.apply_claim(db, row, plan, now))
        jobs += len(admitted)
        fresh = budget.blocked - excluded
        if len(taken) < want or not fresh:
            break
        excluded |= fresh
    deferrals.update(budget, now)
    if params.on_deferred is not None and budget.waiting:
        params.on_deferred(budget.deferred_jobs)
    return runs
