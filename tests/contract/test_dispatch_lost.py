"""Dispatch contract: runs lost with their worker — ``reap_lost`` and ``release_runs`` follow
``domain.states.lost_run``: not started -> the same run QUEUED again (no attempt used);
started -> INTERRUPTED and attempt + 1, or DEAD past the interruption budget; a cancelled
job's run -> CANCELLED. Interruptions never count against the job's ``max_retries``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chronoq.domain.retry import DEFAULT_MAX_INTERRUPTIONS, attempts_left
from chronoq.domain.states import (
    LOST_AT_SHUTDOWN,
    LOST_TO_LEASE,
    LOST_TO_MEMBERSHIP,
    LOST_TOO_OFTEN,
    JobStatus,
    RunStatus,
    outcome_status,
)
from chronoq.ports.store import Store

from .helpers import (
    LEASE,
    T0,
    at,
    claim_due,
    claim_runs,
    job_now,
    lease_and_start,
    make_job,
    outcome,
    reap,
    release,
    run_by_id,
    runs_of,
    submit_and_lease,
)

# -- reap_lost: expired leases ----------------------------------------------------------------


async def test_a_run_lost_before_it_started_goes_back_to_the_queue_as_the_same_attempt(
    store: Store,
) -> None:
    job = make_job(max_retries=0)
    claimed = await submit_and_lease(store, job, "w1")  # lease until T0 + 30 s, not started

    assert await reap(store, at(29)) == 0
    assert await reap(store, at(30)) == 0  # lost only once the lease is past
    assert await reap(store, at(31), retry_at=at(99)) == 1

    (run,) = await runs_of(store, job)  # no new row
    assert (run.run_id, run.attempt, run.status) == (claimed.run_id, 1, RunStatus.QUEUED)
    assert (run.worker_id, run.lease_until, run.started_at) == (None, None, None)
    assert (run.available_at, run.completed_at, run.error_message) == (T0, None, None)
    assert run.interruptions == 0
    assert (await job_now(store, job)).status is JobStatus.PENDING
    assert await reap(store, at(31)) == 0

    stale = outcome(claimed, RunStatus.COMPLETED, completed_at=at(32))
    assert await store.complete_runs([stale]) == [False]
    (again,) = await claim_runs(store, "w2", at(32))
    assert (again.run_id, again.attempt, again.interruptions) == (claimed.run_id, 1, 0)


async def test_a_run_lost_mid_run_is_interrupted_and_its_next_attempt_queued(
    store: Store,
) -> None:
    job = make_job(max_retries=0)  # crash retries do not need max_retries
    claimed = await submit_and_lease(store, job, "w1", started=True)

    assert await reap(store, at(31), retry_at=at(40)) == 1

    old, new = await runs_of(store, job)
    assert old.run_id == claimed.run_id
    assert (old.status, old.completed_at, old.error_message) == (
        RunStatus.INTERRUPTED,
        at(31),
        LOST_TO_LEASE,
    )
    assert (old.lease_until, old.started_at, old.interruptions) == (None, T0, 0)
    assert (new.attempt, new.status, new.scheduled_for, new.interruptions) == (
        2,
        RunStatus.QUEUED,
        T0,
        1,
    )
    assert (new.triggered_at, new.available_at, new.started_at) == (at(31), at(40), None)
    assert new.run_id != old.run_id
    assert (await job_now(store, job)).status is JobStatus.PENDING
    assert await store.next_available_at() == at(40)
    assert await claim_runs(store, "w2", at(39)) == []

    (second,) = await claim_runs(store, "w2", at(40))
    assert (second.run_id, second.attempt, second.interruptions) == (new.run_id, 2, 1)
    late = outcome(claimed, RunStatus.COMPLETED, completed_at=at(41))
    assert await store.complete_runs([late]) == [False]


@pytest.mark.parametrize(
    ("cron", "job_after"), [(None, JobStatus.FAILED), ("@every 1h", JobStatus.PENDING)]
)
async def test_a_run_interrupted_past_the_budget_is_dead(
    store: Store, cron: str | None, job_after: JobStatus
) -> None:
    job = make_job(cron=cron, max_retries=5)
    await submit_and_lease(store, job, "w1", started=True)
    assert await reap(store, at(31), max_interruptions=1) == 1
    await lease_and_start(store, "w2", at(31))

    assert await reap(store, at(100), max_interruptions=1) == 1

    first, second = await runs_of(store, job)
    assert (first.status, first.error_message) == (RunStatus.INTERRUPTED, LOST_TO_LEASE)
    assert (second.attempt, second.interruptions, second.status) == (2, 1, RunStatus.DEAD)
    assert (second.completed_at, second.error_message) == (at(100), LOST_TOO_OFTEN)
    assert second.lease_until is None
    assert (await job_now(store, job)).status is job_after  # a recurring job keeps firing
    assert await store.next_available_at() is None


async def test_the_default_budget_redelivers_a_fire_three_times_then_declares_it_dead(
    store: Store,
) -> None:
    job = make_job()
    await submit_and_lease(store, job, "w1", started=True)
    now = T0
    for _ in range(DEFAULT_MAX_INTERRUPTIONS):
        now += LEASE + timedelta(seconds=1)  # each lease lapses mid-run
        assert await reap(store, now) == 1
        assert len(await lease_and_start(store, "w1", now)) == 1
    assert await reap(store, now + LEASE + timedelta(seconds=1)) == 1

    runs = await runs_of(store, job)
    assert [(r.attempt, r.interruptions, r.status) for r in runs] == [
        (1, 0, RunStatus.INTERRUPTED),
        (2, 1, RunStatus.INTERRUPTED),
        (3, 2, RunStatus.INTERRUPTED),
        (4, 3, RunStatus.DEAD),
    ]
    assert (await job_now(store, job)).status is JobStatus.FAILED


async def test_no_budget_kills_a_started_run_but_still_requeues_one_not_started(
    store: Store,
) -> None:
    started, waiting = make_job(next_fire_at=at(-1)), make_job()
    await store.insert_jobs([started, waiting])
    await claim_due(store, T0)
    first, second = await claim_runs(store, "w1", T0)
    assert await store.mark_started("w1", [first.run_id], T0) == [first.run_id]

    assert await reap(store, at(31), max_interruptions=0) == 2

    (dead,) = await runs_of(store, started)
    assert (dead.status, dead.error_message) == (RunStatus.DEAD, LOST_TOO_OFTEN)
    (back,) = await runs_of(store, waiting)
    assert (back.run_id, back.status) == (second.run_id, RunStatus.QUEUED)


@pytest.mark.parametrize("started", [False, True])
async def test_a_lost_run_of_a_cancelled_job_ends_cancelled(store: Store, started: bool) -> None:
    job = make_job(cron="@every 1h", max_retries=3)
    claimed = await submit_and_lease(store, job, "w1", started=started)
    await store.cancel_job(job.user_id, job.job_id, at(1))

    assert await reap(store, at(31)) == 1

    (run,) = await runs_of(store, job)
    assert (run.run_id, run.status) == (claimed.run_id, RunStatus.CANCELLED)
    assert (run.completed_at, run.error_message, run.lease_until) == (
        at(31),
        "cancelled by the user",
        None,
    )
    assert (await job_now(store, job)).status is JobStatus.CANCELLED
    assert await store.next_available_at() is None


# -- reap_lost: membership and expire_all -----------------------------------------------------


async def test_a_run_of_a_worker_missing_from_live_workers_is_lost_despite_its_lease(
    store: Store,
) -> None:
    gone, alive = make_job(next_fire_at=at(-1)), make_job()
    await store.insert_jobs([gone, alive])
    await claim_due(store, T0)
    (lost,) = await lease_and_start(store, "w1", T0, limit=1)
    (kept,) = await lease_and_start(store, "w2", T0, limit=1)  # both leases valid to T0 + 30 s

    assert await reap(store, at(5)) == 0  # membership unknown: only leases count
    assert await reap(store, at(5), live_workers=frozenset({"w1", "w2"})) == 0
    assert await reap(store, at(5), retry_at=at(6), live_workers=frozenset({"w2", "w9"})) == 1

    old, new = await runs_of(store, gone)
    assert (old.run_id, old.status, old.error_message) == (
        lost.run_id,
        RunStatus.INTERRUPTED,
        LOST_TO_MEMBERSHIP,
    )
    assert (new.status, new.available_at, new.interruptions) == (RunStatus.QUEUED, at(6), 1)
    assert (await run_by_id(store, alive, kept.run_id)).status is RunStatus.RUNNING

    assert await reap(store, at(5), live_workers=frozenset()) == 1  # nobody is alive
    assert (await run_by_id(store, alive, kept.run_id)).status is RunStatus.INTERRUPTED


async def test_a_live_workers_expired_lease_is_lost_to_the_lease(store: Store) -> None:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1", started=True)

    assert await reap(store, at(31), live_workers=frozenset({"w1"})) == 1

    run = await run_by_id(store, job, claimed.run_id)
    assert (run.status, run.error_message) == (RunStatus.INTERRUPTED, LOST_TO_LEASE)


async def test_a_not_started_run_of_a_dead_worker_is_requeued(store: Store) -> None:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1")
    assert await reap(store, at(1), live_workers=frozenset({"w2"})) == 1
    (run,) = await runs_of(store, job)
    assert (run.run_id, run.status, run.worker_id) == (claimed.run_id, RunStatus.QUEUED, None)


async def test_expire_all_takes_every_running_run_up_to_the_limit(store: Store) -> None:
    jobs = [make_job(cron="@every 1h", next_fire_at=at(-i)) for i in range(4)]
    await store.insert_jobs(jobs)
    await claim_due(store, T0)
    claimed = await claim_runs(store, "w1", T0, lease_until=at(3600))
    started = [c.run_id for c in claimed[1:]]
    assert await store.mark_started("w1", started, T0) == started

    assert await reap(store, T0) == 0
    assert await reap(store, at(1), expire_all=True, limit=3) == 3
    assert await reap(store, at(1), expire_all=True) == 1
    assert await reap(store, at(1), expire_all=True) == 0

    first = {c.job_id: c for c in claimed}
    for job in jobs:
        runs = await runs_of(store, job)
        assert (await job_now(store, job)).status is JobStatus.PENDING
        if first[job.job_id].run_id not in started:
            assert [(r.attempt, r.status) for r in runs] == [(1, RunStatus.QUEUED)]
            continue
        assert [(r.attempt, r.status, r.interruptions) for r in runs] == [
            (1, RunStatus.INTERRUPTED, 0),
            (2, RunStatus.QUEUED, 1),
        ]
        assert runs[0].error_message == LOST_TO_LEASE


# -- release_runs -----------------------------------------------------------------------------


async def test_release_hands_a_run_not_started_back_as_the_same_attempt(store: Store) -> None:
    job = make_job(cron="@every 60s")
    claimed = await submit_and_lease(store, job, "w1")

    assert await release(store, "w2", [claimed.run_id], at(1)) == 0
    assert await release(store, "w1", [claimed.run_id, make_job().job_id, "nope"], at(1)) == 1

    (run,) = await runs_of(store, job)
    assert (run.run_id, run.status, run.attempt) == (claimed.run_id, RunStatus.QUEUED, 1)
    assert (run.lease_until, run.worker_id, run.started_at, run.available_at) == (
        None,
        None,
        None,
        T0,
    )
    assert (await job_now(store, job)).status is JobStatus.PENDING
    assert await release(store, "w1", [claimed.run_id], at(1)) == 0

    (again,) = await claim_runs(store, "w2", at(1))
    assert (again.run_id, again.attempt) == (claimed.run_id, 1)
    assert await store.complete_runs([outcome(claimed, RunStatus.COMPLETED)]) == [False]


async def test_release_interrupts_a_started_run_and_queues_the_next_attempt_now(
    store: Store,
) -> None:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1", started=True)

    assert await release(store, "w1", [claimed.run_id], at(7)) == 1

    old, new = await runs_of(store, job)
    assert (old.status, old.completed_at, old.error_message, old.lease_until) == (
        RunStatus.INTERRUPTED,
        at(7),
        LOST_AT_SHUTDOWN,
        None,
    )
    assert (new.attempt, new.interruptions, new.status) == (2, 1, RunStatus.QUEUED)
    assert (new.triggered_at, new.available_at) == (at(7), at(7))
    assert (await job_now(store, job)).status is JobStatus.PENDING


async def test_release_past_the_budget_is_dead_and_of_a_cancelled_job_cancelled(
    store: Store,
) -> None:
    spent, cancelled = make_job(next_fire_at=at(-1)), make_job()
    await store.insert_jobs([spent, cancelled])
    await claim_due(store, T0)
    claimed = await lease_and_start(store, "w1", T0)
    await store.cancel_job(cancelled.user_id, cancelled.job_id, at(1))

    ids = [c.run_id for c in claimed]
    assert await release(store, "w1", ids, at(2), max_interruptions=0) == 2

    (dead,) = await runs_of(store, spent)
    assert (dead.status, dead.error_message) == (RunStatus.DEAD, LOST_TOO_OFTEN)
    assert (await job_now(store, spent)).status is JobStatus.FAILED
    (gone,) = await runs_of(store, cancelled)
    assert (gone.status, gone.error_message) == (RunStatus.CANCELLED, "cancelled by the user")
    assert (await job_now(store, cancelled)).status is JobStatus.CANCELLED


async def test_release_leaves_other_workers_runs_alone(store: Store) -> None:
    mine, theirs = make_job(next_fire_at=at(-1)), make_job()
    await store.insert_jobs([mine, theirs])
    await claim_due(store, T0)
    (own,) = await lease_and_start(store, "w1", T0, limit=1)
    (other,) = await lease_and_start(store, "w2", T0, limit=1)

    assert await release(store, "w1", [other.run_id, own.run_id, own.run_id], at(1)) == 1

    assert (await run_by_id(store, theirs, other.run_id)).status is RunStatus.RUNNING
    assert (await run_by_id(store, mine, own.run_id)).status is RunStatus.INTERRUPTED
    assert await release(store, "w1", [], at(1)) == 0


# -- max_retries counts only the job's own failures -------------------------------------------


async def test_interruptions_do_not_use_the_jobs_retries(store: Store) -> None:
    job = make_job(max_retries=1)
    await submit_and_lease(store, job, "w1", started=True)
    assert await reap(store, at(31)) == 1  # attempt 1 lost mid-run: not the job's failure

    (second,) = await lease_and_start(store, "w2", at(31))
    assert (second.attempt, second.interruptions) == (2, 1)
    status = outcome_status(
        succeeded=False,
        timed_out=False,
        attempts_left=attempts_left(second.attempt, second.max_retries, second.interruptions),
    )
    assert status is RunStatus.RETRY_SCHEDULED  # the job's one retry is still there
    failed = outcome(second, status, worker_id="w2", started_at=at(31), retry_at=at(40))
    assert await store.complete_runs([failed]) == [True]

    (third,) = await lease_and_start(store, "w3", at(40))
    assert (third.attempt, third.interruptions) == (3, 1)  # a job failure adds none
    assert not attempts_left(third.attempt, third.max_retries, third.interruptions)
    final = outcome(third, RunStatus.FAILED, worker_id="w3", started_at=at(40))
    assert await store.complete_runs([final]) == [True]

    runs = await runs_of(store, job)
    assert [(r.attempt, r.interruptions, r.status) for r in runs] == [
        (1, 0, RunStatus.INTERRUPTED),
        (2, 1, RunStatus.RETRY_SCHEDULED),
        (3, 1, RunStatus.FAILED),
    ]
    assert (await job_now(store, job)).status is JobStatus.FAILED
