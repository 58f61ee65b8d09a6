"""The coordinator role in-process (MemoryStore + MemoryCoordination + FakeClock):
election, shard assignment fenced in the store, failure detection by membership,
the trust window after an outage, and a deposed leader's refused fence.

Defaults of the stack: member ttl 3 s (heartbeat every 1 s), leader ttl 3 s,
lease 30 s — so anything reaped within a few seconds was reaped by membership.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from chronoq.domain.jobs import ClaimedRun, Run
from chronoq.domain.states import LOST_TO_MEMBERSHIP, RunStatus
from chronoq.ports.dispatch import ClaimDueParams, ClaimRunsParams
from chronoq.ports.jobs import ListJobsParams

try:
    from chronoq.testing.roles import USER, Stack
except ImportError as exc:  # pragma: no cover - only while the memory adapters are written
    pytest.skip(f"chronoq.testing.roles is not importable yet: {exc}", allow_module_level=True)

MEMBER_TTL = 3.0
HEARTBEAT = MEMBER_TTL / 3


async def shards_of(stack: Stack, owner: str) -> set[int]:
    return set((await stack.coordination.assignment_of(owner)).shards)


async def unclaimed(stack: Stack) -> int:
    return (await stack.store.backlog(stack.clock.now())).due


async def runs_of(stack: Stack, job_id: str) -> list[Run]:
    return sorted(await stack.store.list_runs(USER, job_id), key=lambda r: r.attempt)


async def a_started_run(stack: Stack, payload: str = "sleep:120s") -> str:
    """A job whose first run a worker of the stack is executing; returns the job id."""
    job = stack.job(payload)
    await stack.store.insert_jobs([job])
    stack.notifier.publish("fires")

    async def started() -> bool:
        runs = await runs_of(stack, job.job_id)
        return bool(runs) and runs[0].started_at is not None

    await poll(stack, started, within=5.0)
    return job.job_id


async def all_runs(stack: Stack) -> list[Run]:
    page = await stack.store.list_jobs(ListJobsParams(user_id=USER))
    return [run for job in page.items for run in await stack.store.list_runs(USER, job.job_id)]


async def poll(
    stack: Stack, condition: Callable[[], Awaitable[bool]], *, within: float, step: float = 0.1
) -> float:
    """Advance fake time in ``step``s until the async ``condition()`` holds; the fake seconds
    it took (fails after ``within``)."""
    waited = 0.0
    while not await condition():
        assert waited < within, f"not within {within} fake seconds"
        await stack.clock.advance(step)
        waited += step
    return waited


async def test_the_only_coordinator_leads_and_fences_shards_over_the_live_pickers(
    stack: Stack,
) -> None:
    coordinator = await stack.coordinator("c1")
    await stack.picker("p1")
    await stack.picker("p2")
    await stack.clock.advance(1.0)  # one lead tick sees both pickers
    assert coordinator.is_leader
    p1, p2 = await shards_of(stack, "p1"), await shards_of(stack, "p2")
    assert p1 | p2 == set(range(stack.shard_count)) and not p1 & p2
    assert abs(len(p1) - len(p2)) <= 1

    # The store's fence holds the same owners under the assignment's epoch: both pickers
    # claim, and together they claim every shard's fires.
    await stack.store.insert_jobs([stack.job() for _ in range(40)])
    stack.notifier.publish("fires")
    await stack.clock.advance(0.0)
    assert await unclaimed(stack) == 0
    epoch = (await stack.coordination.assignment_of("p1")).epoch
    await stack.store.insert_jobs([stack.job()])
    now = stack.clock.now()
    wrong = ClaimDueParams(shards=None, now=now, horizon=now, owner="p1", epoch=epoch - 1)
    assert await stack.store.claim_due(wrong) == [], "only the newest epoch is fenced in"


async def test_a_dead_pickers_shards_move_after_the_member_ttl(stack: Stack) -> None:
    await stack.coordinator("c1")
    doomed = await stack.picker("p1")
    await stack.picker("p2")
    await stack.clock.advance(2.0)
    assert await shards_of(stack, "p1")
    stack.cut(doomed)  # killed: no goodbye, the heartbeat just stops

    async def moved() -> bool:
        return await shards_of(stack, "p2") == set(range(stack.shard_count))

    took = await poll(stack, moved, within=10.0)
    assert MEMBER_TTL - HEARTBEAT <= took <= MEMBER_TTL + 1.0 + 0.1, took
    await stack.store.insert_jobs([stack.job() for _ in range(40)])
    stack.notifier.publish("fires")
    await stack.clock.advance(0.0)
    assert await unclaimed(stack) == 0, "p2 claims in every shard (fenced to it)"


async def test_a_dead_workers_runs_are_reaped_within_member_ttl_and_one_pass(
    stack: Stack,
) -> None:
    await stack.coordinator("c1")
    await stack.picker("p1")
    doomed = await stack.worker("w1")
    await stack.clock.advance(5.0)  # the leader has trusted membership for a while
    job_id = await a_started_run(stack)
    stack.cut(doomed)  # SIGKILL: its runs stay RUNNING under a 30 s lease

    async def reaped() -> bool:
        return (await runs_of(stack, job_id))[0].status is RunStatus.INTERRUPTED

    took = await poll(stack, reaped, within=30.0, step=0.05)
    assert took <= MEMBER_TTL + 1.0 + 1.0, f"reaped {took:.2f} s after the kill (lease: 30 s)"
    first, second = await runs_of(stack, job_id)
    assert first.error_message == LOST_TO_MEMBERSHIP
    assert (second.attempt, second.status, second.interruptions) == (2, RunStatus.QUEUED, 1)

    await stack.worker("w2")

    async def completed() -> bool:
        return (await runs_of(stack, job_id))[-1].status is RunStatus.COMPLETED

    await poll(stack, completed, within=130.0, step=1.0)
    assert (await runs_of(stack, job_id))[-1].worker_id == "w2"


async def test_membership_is_not_trusted_right_after_a_coordination_outage(stack: Stack) -> None:
    coordinator = await stack.coordinator("c1")
    worker = await stack.worker("w1")
    await stack.clock.advance(5.0)
    await stack.store.insert_jobs([stack.job("sleep:120s")])
    await stack.picker("p1")
    await stack.clock.advance(2.0)
    assert worker.held == 1
    assert coordinator.membership_trusted

    stack.outage("coordination")  # nobody heartbeats, the leader cannot renew
    stack.cut(worker)  # and this worker stays cut off a little longer than the rest
    await stack.clock.advance(10.0)
    assert not coordinator.is_leader
    stack.restore("coordination")
    # The leader is back at once; the worker's membership row is 12 s old until it is
    # heard from again — 2 s from now, well inside the trust window (ttl + 1 beat = 4 s).
    await stack.clock.advance(2.0)
    assert coordinator.is_leader and not coordinator.membership_trusted
    stack.heal(worker)
    for _ in range(100):
        await stack.clock.advance(0.1)
        runs = [(r.attempt, r.status) for r in await all_runs(stack)]
        assert runs == [(1, RunStatus.RUNNING)], "a live worker's run was reaped"
    assert coordinator.membership_trusted, "trusted again once members had time to beat"
    assert worker.held == 1


async def test_a_deposed_leaders_fence_is_refused_and_it_demotes(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    old = await stack.coordinator("c1")
    await stack.clock.advance(1.0)
    assert old.is_leader
    frozen = stack.link(old, "store").hold("fence_shards")  # it will stall mid-rebalance
    await stack.picker("p1")
    await stack.clock.advance(1.0)  # c1 assigned a new epoch, and hangs fencing it
    stalled_epoch = (await stack.coordination.assignment_of("p1")).epoch

    await stack.clock.advance(4.0)  # its leader lease lapses meanwhile
    new = await stack.coordinator("c2")
    await stack.clock.advance(1.0)
    assert new.is_leader and not old.is_leader
    current = (await stack.coordination.assignment_of("p1")).epoch
    assert current > stalled_epoch, "a new term re-assigns under a new epoch"

    frozen.set()  # the deposed leader's late fence reaches the store
    await stack.clock.advance(0.0)
    assert old.epoch is None
    refused = [r for r in caplog.records if "newer shard assignment" in r.getMessage()]
    assert refused, "the refused fence demotes the leader, loudly"
    await stack.store.insert_jobs([stack.job()])
    now = stack.clock.now()
    late = ClaimDueParams(shards=None, now=now, horizon=now, owner="p1", epoch=stalled_epoch)
    assert await stack.store.claim_due(late) == [], "the late fence changed nothing"
    stack.notifier.publish("fires")
    await stack.clock.advance(0.0)
    assert await unclaimed(stack) == 0, "the picker claims under the new leader's fence"


async def test_embedded_start_hands_back_what_a_dead_process_left_running(stack: Stack) -> None:
    started, unstarted = stack.job("a"), stack.job("b")
    await stack.store.insert_jobs([started, unstarted])
    now = stack.clock.now()
    await stack.store.claim_due(ClaimDueParams(shards=None, now=now, horizon=now))
    lease = now + timedelta(seconds=30)
    claimed: list[ClaimedRun] = await stack.store.claim_runs(
        ClaimRunsParams(worker_id="gone", now=now, horizon=now, lease_until=lease)
    )
    (run_a,) = [r for r in claimed if r.job_id == started.job_id]
    await stack.store.mark_started("gone", [run_a.run_id], now)

    await stack.coordinator("only", distributed=False)
    a, b = await runs_of(stack, started.job_id), await runs_of(stack, unstarted.job_id)
    assert [r.status for r in a] == [RunStatus.INTERRUPTED, RunStatus.QUEUED]
    assert [(r.status, r.attempt) for r in b] == [(RunStatus.QUEUED, 1)], "never ran: requeued"


async def test_a_worker_restarted_under_the_same_id_gets_its_predecessors_runs_reaped(
    stack: Stack,
) -> None:
    """A restart under the same ``--node-id`` is a new lease owner (an incarnation): the
    member id stays live, yet the dead predecessor's runs come back at once, not after its
    30 s lease — and the predecessor, were it only frozen, could not write over them."""
    await stack.coordinator("c1")
    await stack.picker("p1")
    doomed = await stack.worker("w1#old", member_id="w1")
    await stack.clock.advance(5.0)
    job_id = await a_started_run(stack)
    stack.cut(doomed)
    await stack.worker("w1#new", member_id="w1")  # the supervisor restarts it at once

    async def reaped() -> bool:
        return (await runs_of(stack, job_id))[0].status is RunStatus.INTERRUPTED

    took = await poll(stack, reaped, within=30.0, step=0.05)
    assert took <= 2.0, f"reaped {took:.2f} s after the restart (lease: 30 s)"
    assert (await runs_of(stack, job_id))[0].error_message == LOST_TO_MEMBERSHIP

    async def completed() -> bool:
        return (await runs_of(stack, job_id))[-1].status is RunStatus.COMPLETED

    await poll(stack, completed, within=130.0, step=1.0)
    assert (await runs_of(stack, job_id))[-1].worker_id == "w1#new"
