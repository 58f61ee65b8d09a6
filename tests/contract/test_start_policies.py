"""Store contract: ``mark_started`` applies the overlap policy across workers and the start
deadline (``starts.plan_start``), and the store releases a buffered run when the
running one ends (issue 9)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chronoq.domain.jobs import ClaimedRun, Job
from chronoq.domain.policies import Overlap, Policies, SkipReason
from chronoq.domain.queues import DEFAULT_QUEUE
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.ports.dispatch import ClaimRunsParams, LeaseRenewal, Outbox, OutboxParams
from chronoq.ports.store import Store

from .conftest import Harness
from .helpers import (
    LEASE,
    T0,
    at,
    claim_due,
    claim_runs,
    complete,
    fires_of,
    job_now,
    outcome,
    policy_job,
    reap,
    run_by_id,
)


async def first_running(store: Store, overlap: Overlap) -> tuple[Job, ClaimedRun]:
    """A job ``@every 10s`` from T0 whose T0 run w1 holds and started at T0 (lease T0+30 s)."""
    job = policy_job(Policies(overlap=overlap), cron="@every 10s", next_fire_at=T0)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    (claimed,) = await claim_runs(store, "w1", T0)
    assert await store.mark_started("w1", [claimed.run_id], T0) == [claimed.run_id]
    return job, claimed


async def second_leased(store: Store, when: float = 10) -> ClaimedRun:
    """The next fire (at ``when``), claimed and leased to w2 at that instant."""
    (run,) = await claim_due(store, at(when))
    (claimed,) = await claim_runs(store, "w2", at(when))
    assert claimed.run_id == run.run_id
    return claimed


async def test_overlap_skip_refuses_the_second_run_while_the_first_runs(store: Store) -> None:
    job, first = await first_running(store, Overlap.SKIP)
    second = await second_leased(store)

    assert await store.mark_started("w2", [second.run_id], at(10)) == []

    refused = await run_by_id(store, job, second.run_id)
    assert (refused.status, refused.completed_at, refused.error_message) == (
        RunStatus.SKIPPED,
        at(10),
        "skipped: overlap",
    )
    assert refused.lease_until is None
    assert (await run_by_id(store, job, first.run_id)).status is RunStatus.RUNNING
    assert (await job_now(store, job)).status is JobStatus.RUNNING  # its running run keeps it so
    fire = (await fires_of(store, job))[1]
    assert (fire.scheduled_for, fire.outcome, fire.reason, fire.run_id, fire.count) == (
        at(10),
        "SKIPPED",
        SkipReason.OVERLAP,
        second.run_id,
        1,
    )
    assert (await store.skip_counts()).get(SkipReason.OVERLAP) == 1
    empty = LeaseRenewal(held=[], cancel=[])
    assert await store.extend_leases("w2", [second.run_id], at(40)) == empty

    await complete(store, first, "w1", at(12))  # the first ends: the next fire starts
    third = await second_leased(store, 20)
    assert await store.mark_started("w2", [third.run_id], at(20)) == [third.run_id]
    assert (await job_now(store, job)).status is JobStatus.RUNNING


async def test_overlap_allow_starts_both(store: Store) -> None:
    job, first = await first_running(store, Overlap.ALLOW)
    second = await second_leased(store)

    assert await store.mark_started("w2", [second.run_id], at(10)) == [second.run_id]

    assert (await run_by_id(store, job, first.run_id)).status is RunStatus.RUNNING
    started = await run_by_id(store, job, second.run_id)
    assert (started.status, started.started_at) == (RunStatus.RUNNING, at(10))
    assert (await job_now(store, job)).status is JobStatus.RUNNING


async def test_buffer_one_holds_one_run_until_the_running_one_ends(store: Store) -> None:
    job, first = await first_running(store, Overlap.BUFFER_ONE)
    second = await second_leased(store)

    assert await store.mark_started("w2", [second.run_id], at(10)) == []

    held = await run_by_id(store, job, second.run_id)
    assert (held.status, held.attempt, held.started_at, held.lease_until) == (
        RunStatus.QUEUED,
        1,
        None,
        None,
    )
    assert held.available_at == T0 + LEASE  # at the latest when the running run's lease ends
    assert (await job_now(store, job)).status is JobStatus.RUNNING
    assert await claim_runs(store, "w2", at(15)) == []

    third = await second_leased(store, 20)  # a further fire while one is buffered: skipped
    assert await store.mark_started("w2", [third.run_id], at(20)) == []
    skipped = await run_by_id(store, job, third.run_id)
    assert (skipped.status, skipped.error_message) == (RunStatus.SKIPPED, "skipped: overlap")

    await complete(store, first, "w1", at(22))  # released: available now

    released = await run_by_id(store, job, second.run_id)
    assert (released.status, released.available_at) == (RunStatus.QUEUED, at(22))
    assert (await job_now(store, job)).status is JobStatus.PENDING
    (again,) = await claim_runs(store, "w2", at(22))
    assert again.run_id == second.run_id
    assert await store.mark_started("w2", [again.run_id], at(22)) == [again.run_id]
    assert (await job_now(store, job)).status is JobStatus.RUNNING
    assert [(f.scheduled_for, f.outcome, f.reason) for f in await fires_of(store, job)] == [
        (T0, "COMPLETED", None),
        (at(10), "RUNNING", None),
        (at(20), "SKIPPED", SkipReason.OVERLAP),
    ]


async def test_a_buffered_run_is_judged_again_when_it_comes_back_before_the_end(
    store: Store,
) -> None:
    job, first = await first_running(store, Overlap.BUFFER_ONE)
    second = await second_leased(store)
    assert await store.mark_started("w2", [second.run_id], at(10)) == []
    renewal = await store.extend_leases("w1", [first.run_id], at(90))  # the first goes on
    assert renewal.held == [first.run_id]

    (back,) = await claim_runs(store, "w3", T0 + LEASE)
    assert back.run_id == second.run_id
    assert await store.mark_started("w3", [back.run_id], T0 + LEASE) == []  # buffered again

    held = await run_by_id(store, job, second.run_id)
    assert (held.status, held.available_at) == (RunStatus.QUEUED, at(90))


async def test_cancel_previous_stops_the_running_run_and_starts_the_new_one(store: Store) -> None:
    job, first = await first_running(store, Overlap.CANCEL_PREVIOUS)
    second = await second_leased(store)

    assert await store.mark_started("w2", [second.run_id], at(10)) == []

    renewal = await store.extend_leases("w1", [first.run_id], at(40))
    assert (renewal.held, renewal.cancel) == ([first.run_id], [first.run_id])
    held = await run_by_id(store, job, second.run_id)
    assert (held.status, held.available_at) == (RunStatus.QUEUED, T0 + LEASE)
    killed = outcome(first, RunStatus.CANCELLED, started_at=T0, completed_at=at(11), exit_code=None)
    assert await store.complete_runs([killed]) == [True]

    assert (await run_by_id(store, job, first.run_id)).status is RunStatus.CANCELLED
    after = await job_now(store, job)
    assert (after.status, after.next_fire_at) == (JobStatus.PENDING, at(20))  # the job goes on
    released = await run_by_id(store, job, second.run_id)
    assert released.available_at == at(11)
    (again,) = await claim_runs(store, "w2", at(11))
    assert await store.mark_started("w2", [again.run_id], at(11)) == [second.run_id]
    assert (await job_now(store, job)).status is JobStatus.RUNNING


async def test_a_lost_running_run_releases_the_buffered_one(store: Store) -> None:
    job, first = await first_running(store, Overlap.BUFFER_ONE)
    second = await second_leased(store)
    assert await store.mark_started("w2", [second.run_id], at(10)) == []

    assert await reap(store, at(12), live_workers=frozenset({"w2"})) == 1  # w1 is gone

    assert (await run_by_id(store, job, first.run_id)).status is RunStatus.INTERRUPTED
    assert (await run_by_id(store, job, second.run_id)).available_at == at(12)


async def test_runs_of_one_job_in_one_batch_see_each_others_decisions(store: Store) -> None:
    job = policy_job(Policies(overlap=Overlap.SKIP), cron="@every 10s", next_fire_at=T0)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    await claim_due(store, at(10))
    claimed = await claim_runs(store, "w1", at(10))
    ids = [c.run_id for c in claimed]
    assert len(ids) == 2

    assert await store.mark_started("w1", ids, at(10)) == ids[:1]

    assert (await run_by_id(store, job, ids[1])).status is RunStatus.SKIPPED


async def test_in_one_batch_the_older_fire_of_a_job_starts_whatever_the_order_asked(
    store: Store,
) -> None:
    """A worker that comes back to a backlog (a redelivered fire and newer ones) starts the
    oldest fire of each job; the newer ones are the overlap."""
    job = policy_job(Policies(overlap=Overlap.SKIP), cron="@every 10s", next_fire_at=T0)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    await claim_due(store, at(10))
    older, newer = sorted(await claim_runs(store, "w1", at(10)), key=lambda c: c.scheduled_for)

    assert await store.mark_started("w1", [newer.run_id, older.run_id], at(10)) == [older.run_id]

    assert (await run_by_id(store, job, newer.run_id)).status is RunStatus.SKIPPED


async def test_a_manual_fire_goes_through_the_overlap_policy(store: Store) -> None:
    job, _ = await first_running(store, Overlap.SKIP)
    manual = await store.trigger_job(job.user_id, job.job_id, at(3.5))
    assert manual is not None
    (claimed,) = await claim_runs(store, "w2", at(3.5))

    assert await store.mark_started("w2", [claimed.run_id], at(3.5)) == []

    (entry,) = [f for f in await fires_of(store, job) if f.manual]
    assert (entry.scheduled_for, entry.outcome, entry.reason, entry.run_id) == (
        at(3.5),
        "SKIPPED",
        SkipReason.OVERLAP,
        manual.run_id,
    )
    assert (await job_now(store, job)).fire_count == 1


# -- the start deadline ------------------------------------------------------------------------


@pytest.mark.parametrize(("late", "starts"), [(4.5, True), (5, True), (5.5, False)])
async def test_a_first_attempt_past_its_start_deadline_is_skipped(
    store: Store, late: float, starts: bool
) -> None:
    job = policy_job(
        Policies(start_deadline_seconds=5, overlap=Overlap.ALLOW),
        cron="@every 60s",
        next_fire_at=T0,
    )
    await store.insert_jobs([job])
    (run,) = await claim_due(store, T0)
    (claimed,) = await claim_runs(store, "w1", at(late))

    started = await store.mark_started("w1", [claimed.run_id], at(late))

    after = await run_by_id(store, job, run.run_id)
    if starts:
        assert started == [run.run_id]
        assert (after.status, after.started_at) == (RunStatus.RUNNING, at(late))
        assert (await job_now(store, job)).status is JobStatus.RUNNING
        return
    assert started == []
    assert (after.status, after.error_message) == (RunStatus.SKIPPED, "skipped: missed_deadline")
    assert (await job_now(store, job)).status is JobStatus.PENDING
    (fire,) = await fires_of(store, job)
    assert (fire.outcome, fire.reason, fire.run_id) == (
        "SKIPPED",
        SkipReason.MISSED_DEADLINE,
        run.run_id,
    )
    assert (await store.skip_counts()).get(SkipReason.MISSED_DEADLINE) == 1


async def test_a_one_shot_job_whose_fire_missed_its_deadline_fails(store: Store) -> None:
    job = policy_job(Policies(start_deadline_seconds=5), next_fire_at=T0)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    (claimed,) = await claim_runs(store, "w1", at(30))

    assert await store.mark_started("w1", [claimed.run_id], at(30)) == []

    assert (await job_now(store, job)).status is JobStatus.FAILED


async def test_a_retry_is_not_held_to_the_start_deadline(store: Store) -> None:
    job = policy_job(Policies(start_deadline_seconds=5), next_fire_at=T0, max_retries=1)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    (first,) = await claim_runs(store, "w1", at(1))
    assert await store.mark_started("w1", [first.run_id], at(1)) == [first.run_id]
    failed = outcome(
        first,
        RunStatus.RETRY_SCHEDULED,
        started_at=at(1),
        completed_at=at(2),
        retry_at=at(60),
        exit_code=1,
    )
    assert await store.complete_runs([failed]) == [True]

    (retry,) = await claim_runs(store, "w2", at(60))
    assert retry.attempt == 2
    assert await store.mark_started("w2", [retry.run_id], at(60) + timedelta(seconds=1)) == [
        retry.run_id
    ]
    assert (await job_now(store, job)).status is JobStatus.RUNNING


@pytest.mark.parametrize(
    ("policies", "cron", "check"),
    [
        (Policies(), "@every 10s", True),
        (Policies(overlap=Overlap.ALLOW), "@every 10s", False),
        (Policies(overlap=Overlap.ALLOW, start_deadline_seconds=9), "@every 10s", True),
        (Policies(), None, False),
        (Policies(start_deadline_seconds=9), None, True),
    ],
)
async def test_a_claimed_run_says_whether_its_start_is_judged(
    store: Store, policies: Policies, cron: str | None, check: bool
) -> None:
    await store.insert_jobs([policy_job(policies, cron=cron, next_fire_at=T0)])
    await claim_due(store, T0)

    (claimed,) = await claim_runs(store, "w1", T0)

    assert claimed.start_check is check


async def test_a_buffered_run_needs_a_message_again_and_again_when_released(
    harness: Harness,
) -> None:
    store = harness.store
    if not isinstance(store, Outbox):
        pytest.skip(f"the {harness.kind} store keeps no outbox")
    job, first = await first_running(store, Overlap.BUFFER_ONE)
    second = await second_leased(store)
    assert await store.mark_published([first.run_id, second.run_id], at(10)) == 0  # RUNNING

    assert await store.mark_started("w2", [second.run_id], at(10)) == []  # buffered: QUEUED

    def unpublished(now: float) -> OutboxParams:
        return OutboxParams(horizon=at(now) + LEASE, settled_before=at(now + 60))

    queue = DEFAULT_QUEUE
    assert await store.unpublished_runs(unpublished(11)) == [(second.run_id, queue)]
    assert await store.mark_published([second.run_id], at(11)) == 1
    assert await store.unpublished_runs(unpublished(11)) == []
    await complete(store, first, "w1", at(12))  # released: available now, sent again
    assert await store.unpublished_runs(unpublished(12)) == [(second.run_id, queue)]
    assert await store.queued_runs([second.run_id]) == {second.run_id: at(12)}
    claimed = await store.claim_runs(
        ClaimRunsParams(worker_id="w3", now=at(12), horizon=at(12), lease_until=at(42))
    )
    assert [c.run_id for c in claimed] == [second.run_id]
    assert (await job_now(store, job)).status is JobStatus.RUNNING
