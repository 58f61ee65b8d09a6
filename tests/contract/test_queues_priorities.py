"""Store contract: queues, priorities and concurrency limits at claim (``domain.queues``).

Runs copy their job's queue and priority when they are created; ``claim_runs`` takes
the runs of the worker's queues, highest priority first, then the oldest; limits count
every RUNNING run in the store (whoever leased it), and a run over a limit stays QUEUED
while the others go on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from chronoq.domain.jobs import ClaimedRun, Job, JobChanges
from chronoq.domain.queues import ClaimLimits
from chronoq.domain.states import RunStatus
from chronoq.errors import ValidationError
from chronoq.ports.dispatch import ClaimRunsParams
from chronoq.ports.store import Store

from .helpers import LEASE, T0, at, claim_due, make_job, outcome, release, run_by_id, runs_of

LATER = at(100)
"""When the tests claim, by default: after every fire they make."""


def queued_job(
    queue: str = "default", priority: int = 0, *, fire: datetime = T0, **fields: object
) -> Job:
    return replace(make_job(next_fire_at=fire, **fields), queue=queue, priority=priority)  # type: ignore[arg-type]


async def fired(store: Store, *jobs: Job, now: datetime = LATER) -> None:
    """Insert the jobs and claim every fire due by ``now``: one QUEUED run each."""
    await store.insert_jobs(list(jobs))
    assert len(await claim_due(store, now)) == len(jobs)


async def claim(
    store: Store,
    worker_id: str = "w1",
    *,
    now: datetime = LATER,
    limit: int = 100,
    queues: set[str] | None = None,
    per_queue: dict[str, int] | None = None,
    per_user: int = 0,
) -> list[ClaimedRun]:
    return await store.claim_runs(
        ClaimRunsParams(
            worker_id=worker_id,
            now=now,
            horizon=now,
            lease_until=now + LEASE,
            limit=limit,
            queues=None if queues is None else frozenset(queues),
            limits=ClaimLimits(per_queue=per_queue or {}, per_user=per_user),
        )
    )


def jobs_of(claimed: list[ClaimedRun]) -> set[str]:
    return {c.job_id for c in claimed}


# -- runs carry the queue and priority of their job -------------------------------------------


async def test_a_run_carries_its_jobs_queue_and_priority(store: Store) -> None:
    job = queued_job("reports", 7)
    await store.insert_jobs([job])
    (returned,) = await claim_due(store, T0)  # the claim's answer says it too
    assert (returned.queue, returned.priority) == ("reports", 7)
    (run,) = await runs_of(store, job)
    assert (run.queue, run.priority) == ("reports", 7)
    stored = await store.get_job(job.user_id, job.job_id)
    assert stored is not None and (stored.queue, stored.priority) == ("reports", 7)


async def test_a_change_moves_later_runs_only(store: Store) -> None:
    job = queued_job("slow", 0, cron="@every 10s")
    await fired(store, job, now=T0)  # the fire at T0: a run in "slow"
    changes = JobChanges(fields=frozenset({"queue", "priority"}), queue="fast", priority=9)
    assert await store.update_job(job.user_id, job.job_id, changes, at(1)) is not None
    assert len(await claim_due(store, at(10))) == 1  # the fire at T0+10: after the change
    first, second = await runs_of(store, job)
    assert [(r.queue, r.priority) for r in (first, second)] == [("slow", 0), ("fast", 9)]
    # A worker of "fast" takes only the later run; the earlier one stays for "slow".
    (taken,) = await claim(store, now=at(10), queues={"fast"})
    assert taken.run_id == second.run_id
    (taken,) = await claim(store, now=at(10), queues={"slow"})
    assert taken.run_id == first.run_id


async def test_a_retry_and_a_trigger_take_the_queue_the_job_has_then(store: Store) -> None:
    job = queued_job("a", 1, max_retries=1, cron="@every 1h")
    await fired(store, job, now=T0)
    (leased,) = await claim(store, now=T0)
    changes = JobChanges(fields=frozenset({"queue", "priority"}), queue="b", priority=-3)
    assert await store.update_job(job.user_id, job.job_id, changes, at(1)) is not None
    retry = outcome(leased, RunStatus.RETRY_SCHEDULED, started_at=at(1), retry_at=at(5))
    assert await store.complete_runs([retry]) == [True]
    manual = await store.trigger_job(job.user_id, job.job_id, at(6))
    assert manual is not None and (manual.queue, manual.priority) == ("b", -3)
    runs = await runs_of(store, job)
    assert [(r.attempt, r.manual, r.queue, r.priority) for r in runs] == [
        (1, False, "a", 1),
        (2, False, "b", -3),
        (1, True, "b", -3),
    ]
    assert (await run_by_id(store, job, manual.run_id)).queue == "b"


# -- claim order and queue filtering ----------------------------------------------------------


async def test_higher_priority_first_then_the_oldest(store: Store) -> None:
    low_old = queued_job("default", -5, fire=T0)
    mid_new = queued_job("default", 0, fire=at(3))
    mid_old = queued_job("default", 0, fire=at(1))
    high_new = queued_job("default", 1000, fire=at(4))
    await fired(store, low_old, mid_new, mid_old, high_new)
    order = []
    for _ in range(4):
        (one,) = await claim(store, limit=1)
        order.append(one.job_id)
    assert order == [high_new.job_id, mid_old.job_id, mid_new.job_id, low_old.job_id]
    assert await claim(store) == []


async def test_a_run_not_available_yet_waits_whatever_its_priority(store: Store) -> None:
    urgent_later = queued_job("default", 100, fire=at(50))
    plain_now = queued_job("default", 0, fire=T0)
    await fired(store, urgent_later, plain_now, now=at(50))
    assert jobs_of(await claim(store, now=at(10))) == {plain_now.job_id}
    assert jobs_of(await claim(store, now=at(50))) == {urgent_later.job_id}


async def test_a_worker_claims_only_from_its_queues(store: Store) -> None:
    a = queued_job("a", fire=T0)
    b = queued_job("b", 5, fire=at(1))
    other = queued_job("default", 9, fire=at(2))
    await fired(store, a, b, other)
    assert await claim(store, queues={"nothing-here"}) == []
    assert jobs_of(await claim(store, queues={"a"})) == {a.job_id}
    both = await claim(store, queues={"b", "default"})
    assert jobs_of(both) == {other.job_id, b.job_id}
    assert await claim(store) == []


async def test_queue_filtering_keeps_priority_order_within_the_queues(store: Store) -> None:
    jobs = [queued_job(q, p, fire=at(i)) for i, (q, p) in enumerate(
        [("a", 1), ("b", 3), ("a", 2), ("c", 10), ("b", 0)]
    )]  # fmt: skip
    await fired(store, *jobs)
    order = []
    while taken := await claim(store, limit=1, queues={"a", "b"}):
        order.append(taken[0].job_id)
    assert order == [jobs[1].job_id, jobs[2].job_id, jobs[0].job_id, jobs[4].job_id]
    assert jobs_of(await claim(store)) == {jobs[3].job_id}


def test_a_claim_names_at_least_one_queue() -> None:
    with pytest.raises(ValidationError) as caught:
        ClaimRunsParams(worker_id="w", now=T0, horizon=T0, lease_until=T0, queues=frozenset())
    assert caught.value.field == "queues"


# -- limits -----------------------------------------------------------------------------------


async def test_a_queue_limit_counts_the_runs_of_every_worker(store: Store) -> None:
    limited = [queued_job("gpu", fire=at(i)) for i in range(4)]
    free = queued_job("default", fire=at(10))
    await fired(store, *limited, free)
    first = await claim(store, "w1", per_queue={"gpu": 2})
    assert jobs_of(first) == {limited[0].job_id, limited[1].job_id, free.job_id}
    # Another worker, same limit: the two RUNNING runs of w1 fill the queue.
    assert await claim(store, "w2", per_queue={"gpu": 2}) == []
    # A run of the queue ends: one slot frees, the oldest waiting run takes it.
    gpu_run = next(c for c in first if c.job_id == limited[0].job_id)
    done = outcome(gpu_run, RunStatus.COMPLETED, started_at=at(100))
    assert await store.complete_runs([done]) == [True]
    second = await claim(store, "w2", now=at(102), per_queue={"gpu": 2})
    assert jobs_of(second) == {limited[2].job_id}
    assert await claim(store, "w3", now=at(102), per_queue={"gpu": 2}) == []


async def test_a_run_started_and_a_run_leased_count_alike(store: Store) -> None:
    jobs = [queued_job("q", fire=at(i)) for i in range(3)]
    await fired(store, *jobs)
    (one,) = await claim(store, "w1", limit=1)
    assert await store.mark_started("w1", [one.run_id], at(100)) == [one.run_id]
    (two,) = await claim(store, "w2", per_queue={"q": 2})
    assert two.job_id == jobs[1].job_id
    assert await claim(store, "w3", per_queue={"q": 2}) == []


async def test_a_user_limit_counts_the_users_runs_in_every_queue(store: Store) -> None:
    alice = [queued_job(q, fire=at(i), user_id="alice") for i, q in enumerate("abab")]
    bob = queued_job("a", fire=at(9), user_id="bob")
    await fired(store, *alice, bob)
    (first,) = await claim(store, "w1", limit=1, per_user=2)
    assert first.job_id == alice[0].job_id
    second = await claim(store, "w2", per_user=2)
    assert jobs_of(second) == {alice[1].job_id, bob.job_id}
    assert await claim(store, "w3", per_user=2) == []
    # Unlimited claims are not held back (0 = no limit).
    assert jobs_of(await claim(store, "w4", per_user=0)) == {alice[2].job_id, alice[3].job_id}


async def test_a_saturated_users_backlog_does_not_delay_another_users_runs(
    store: Store,
) -> None:
    """Alice's 30 runs are older and more urgent than Bob's, and she may run 2 at once:
    a claim of 5 still gets Bob's runs now, not after her backlog drains."""
    alice = [queued_job(fire=at(i), priority=10, user_id="alice") for i in range(30)]
    bob = [queued_job(fire=at(40 + i), user_id="bob") for i in range(3)]
    await fired(store, *alice, *bob)
    claimed = await claim(store, "w1", limit=5, per_user=2)
    assert jobs_of(claimed) == jobs_of_list(alice[:2] + bob[:2])  # Bob may run 2 too
    assert await claim(store, "w2", limit=5, per_user=2) == []
    # A full queue does not hold back the others either.
    more = [queued_job("busy", 50, fire=at(60 + i), user_id=f"u{i}") for i in range(20)]
    calm = queued_job("calm", 0, fire=at(90), user_id="carol")
    await fired(store, *more, calm)
    taken = await claim(store, "w3", limit=3, per_queue={"busy": 1}, per_user=2)
    assert jobs_of(taken) == {more[0].job_id, calm.job_id}


def jobs_of_list(jobs: list[Job]) -> set[str]:
    return {j.job_id for j in jobs}


async def test_limits_and_queues_together(store: Store) -> None:
    a = [queued_job("a", fire=at(i), user_id="alice") for i in range(3)]
    b = queued_job("b", 100, fire=at(5), user_id="alice")
    await fired(store, *a, b)
    taken = await claim(store, queues={"a"}, per_queue={"a": 5}, per_user=2)
    assert jobs_of(taken) == {a[0].job_id, a[1].job_id}  # "b" is not this worker's
    assert await claim(store, "w2", queues={"b"}, per_user=2) == []  # alice is full
    assert jobs_of(await claim(store, "w2", queues={"b"})) == {b.job_id}


async def test_a_limited_claim_pages_past_a_long_blocked_head(store: Store) -> None:
    """More blocked candidates than the claim's limit in front, in several users: each
    read leaves the full users out, so the claim still fills."""
    blocked = [queued_job(fire=at(i), priority=5, user_id=f"user{i % 4}") for i in range(40)]
    free = [queued_job(fire=at(50 + i), user_id="zed") for i in range(4)]
    await fired(store, *blocked, *free)
    taken = await claim(store, limit=8, per_user=1)
    assert jobs_of(taken) == {blocked[i].job_id for i in range(4)} | {free[0].job_id}
    assert len(taken) == 5


def test_limits_are_checked() -> None:
    for bad in ({"gpu": 0}, {"bad name": 1}, {"x": -1}):
        with pytest.raises(ValidationError) as caught:
            ClaimLimits(per_queue=bad)
        assert caught.value.field == "queue_limits"
    with pytest.raises(ValidationError) as caught:
        ClaimLimits(per_user=-1)
    assert caught.value.field == "user_max_concurrent_runs"


async def test_a_requeued_run_keeps_its_queue(store: Store) -> None:
    job = queued_job("q", 3)
    await fired(store, job)
    (leased,) = await claim(store, queues={"q"})
    assert await release(store, "w1", [leased.run_id], at(101)) == 1
    (run,) = await runs_of(store, job)
    assert (run.status, run.queue, run.priority) == (RunStatus.QUEUED, "q", 3)
    assert await claim(store, now=at(102), queues={"other"}) == []
    assert jobs_of(await claim(store, now=at(102), queues={"q"})) == {job.job_id}
