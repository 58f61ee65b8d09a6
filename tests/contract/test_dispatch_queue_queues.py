"""QueuedDispatch with queues, priorities and concurrency limits (docs/queues.md), on the
memory and PostgreSQL stores with ``MemoryRunQueue`` on a ``FakeClock``: each queue has
its own broker queue; the store's claim chooses (queues, priority, limits); the messages
in hand whose run was not chosen are handed back, spent, or hidden until due."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from chronoq.adapters.memory.runqueue import MemoryRunQueue
from chronoq.adapters.queue.dispatch import PASSED_HOLD
from chronoq.adapters.queue.receiver import QueueSet
from chronoq.domain.jobs import ClaimedRun
from chronoq.domain.queues import DEFAULT_QUEUE, ClaimLimits
from chronoq.domain.states import RunStatus
from chronoq.ports.dispatch import ClaimDueParams, ClaimRunsParams
from chronoq.testing import FakeClock

from .helpers import T0, make_job, outcome
from .test_dispatch_queue import LEASE, Rig, _status, rig

__all__ = ["rig"]


async def fire(rig: Rig, *specs: tuple[str, int]) -> list[str]:
    """Submit one job per (queue, priority), due now, claim their fires; run ids in order."""
    jobs = [replace(make_job(next_fire_at=rig.now()), queue=q, priority=p) for q, p in specs]
    await rig.store.insert_jobs(jobs)
    runs = await rig.dispatch.claim_due(ClaimDueParams(shards=None, now=rig.now(),
                                                       horizon=rig.now()))  # fmt: skip
    await rig.dispatch.settled()
    by_job = {r.job_id: r.run_id for r in runs}
    return [by_job[j.job_id] for j in jobs]


async def claim(
    rig: Rig,
    worker: str,
    *,
    limit: int = 100,
    queues: frozenset[str] | None = None,
    limits: ClaimLimits | None = None,
) -> list[ClaimedRun]:
    now = rig.now()
    params = ClaimRunsParams(
        worker_id=worker, now=now, horizon=now + timedelta(seconds=0.5),
        lease_until=now + timedelta(seconds=LEASE), limit=limit, queues=queues,
    )  # fmt: skip
    if limits is not None:
        params = replace(params, limits=limits)
    claimed = await rig.dispatch.claim_runs(params)
    await rig.dispatch.settled()
    return claimed


def broker(rig: Rig, name: str) -> MemoryRunQueue:
    queue = rig.queue.named(name)
    assert isinstance(queue, MemoryRunQueue)
    return queue


async def finish(rig: Rig, runs: list[ClaimedRun], worker: str) -> None:
    done = [outcome(r, RunStatus.COMPLETED, worker_id=worker, started_at=rig.now()) for r in runs]
    assert await rig.dispatch.complete_runs(done) == [True] * len(done)
    await rig.dispatch.settled()


async def test_each_queue_has_its_own_broker_queue_and_workers_only_read_theirs(rig: Rig) -> None:
    plain, fast = await fire(rig, (DEFAULT_QUEUE, 0), ("fast", 0))
    assert await rig.queue.depth() == 1  # default: the URL's own queue
    assert await broker(rig, "fast").depth() == 1

    assert await claim(rig, "slow-worker", queues=frozenset({"other"})) == []
    (got,) = await claim(rig, "fast-worker", queues=frozenset({"fast"}))
    assert got.run_id == fast
    assert await _status(rig, plain) is RunStatus.QUEUED  # not its queue: untouched
    (other,) = await claim(rig, "any-worker")  # every queue: default (and fast, empty now)
    assert other.run_id == plain

    await finish(rig, [got], "fast-worker")
    await finish(rig, [other], "any-worker")
    assert await rig.queue.depth() == 0 and await broker(rig, "fast").depth() == 0
    assert await rig.dispatch.depth() == 0


async def test_a_worker_of_every_queue_finds_new_queues_through_the_store(rig: Rig) -> None:
    (run_id,) = await fire(rig, ("reports.eu-1", 0))
    (got,) = await claim(rig, "w1")
    assert got.run_id == run_id
    await finish(rig, [got], "w1")
    assert await broker(rig, "reports.eu-1").depth() == 0


async def test_higher_priority_goes_first_whatever_the_broker_order(rig: Rig) -> None:
    low = await fire(rig, *[("q", 0)] * 3)
    (high,) = await fire(rig, ("q", 5))  # its message is last in the broker

    (first,) = await claim(rig, "w1", limit=1, queues=frozenset({"q"}))

    assert first.run_id == high  # the store chose; the message in hand was a low one's
    for run_id in low:
        assert await _status(rig, run_id) is RunStatus.QUEUED
    # The low message in hand went back at once (w1 was full): another worker takes it.
    (second,) = await claim(rig, "w2", limit=1, queues=frozenset({"q"}))
    assert second.run_id in low
    rest = await claim(rig, "w3", queues=frozenset({"q"}))
    assert sorted(r.run_id for r in rest) == sorted(set(low) - {second.run_id})
    await finish(rig, [first], "w1")
    await finish(rig, [second], "w2")
    await finish(rig, rest, "w3")
    assert await claim(rig, "w4", queues=frozenset({"q"})) == []  # high's stale message: spent
    assert await broker(rig, "q").depth() == 0


async def test_a_queue_limit_holds_runs_back_and_their_messages_come_back_later(
    rig: Rig,
) -> None:
    limits = ClaimLimits(per_queue={"gpu": 1})
    one, two = await fire(rig, ("gpu", 0), ("gpu", 0))
    (plain,) = await fire(rig, (DEFAULT_QUEUE, 0))

    got = await claim(rig, "w1", limits=limits)
    (leased,) = [r for r in got if r.run_id != plain]  # one gpu run at a time, and plain
    assert len(got) == 2 and leased.run_id in (one, two)
    waiting = two if leased.run_id == one else one
    assert await claim(rig, "w2", limits=limits) == []  # its message: handed back for later
    assert await _status(rig, waiting) is RunStatus.QUEUED
    gpu = broker(rig, "gpu")
    assert await gpu.receive("peek", 10, wait=0, hold=0) == []  # hidden for PASSED_HOLD
    await rig.clock.advance(PASSED_HOLD + 0.1)
    assert await claim(rig, "w2", limits=limits) == []  # still full: back again

    await finish(rig, [leased], "w1")
    await rig.clock.advance(PASSED_HOLD + 0.1)
    (later,) = await claim(rig, "w2", limits=limits)
    assert later.run_id == waiting


async def test_a_user_limit_holds_only_that_users_runs(rig: Rig) -> None:
    limits = ClaimLimits(per_user=1)
    jobs = [replace(make_job(next_fire_at=rig.now(), user_id=u), queue="q") for u in "aab"]
    await rig.store.insert_jobs(jobs)
    await rig.dispatch.claim_due(ClaimDueParams(shards=None, now=rig.now(), horizon=rig.now()))
    await rig.dispatch.settled()

    got = await claim(rig, "w1", limits=limits)

    users = {j.job_id: j.user_id for j in jobs}
    assert sorted(users[r.job_id] for r in got) == ["a", "b"]  # one of a's two, and b's


async def test_an_emptied_broker_queue_is_rebuilt_alone(rig: Rig) -> None:
    plain, fast = await fire(rig, (DEFAULT_QUEUE, 0), ("fast", 0))
    broker(rig, "fast")._messages.clear()  # only this broker queue lost its messages
    await rig.clock.advance(1)

    assert await rig.dispatch.relay(rig.now()) == 1  # fast's run only
    assert await rig.queue.depth() == 1 and await broker(rig, "fast").depth() == 1
    got = await claim(rig, "w1")
    assert sorted(r.run_id for r in got) == sorted([plain, fast])


async def test_dead_letters_of_a_queue_are_sent_again_to_that_queue(rig: Rig) -> None:
    (run_id,) = await fire(rig, ("fast", 0))
    fast = broker(rig, "fast")
    for _ in range(3):  # receivers that die before claiming
        assert len(await fast.receive("ghost", 10, wait=0, hold=1)) == 1
        await rig.clock.advance(2)
    assert await claim(rig, "w1", queues=frozenset({"fast"})) == []  # dead-lettered now

    assert await rig.dispatch.relay(rig.now()) == 1
    assert await rig.queue.depth() == 0  # not into the default queue
    (got,) = await claim(rig, "w1", queues=frozenset({"fast"}))
    assert got.run_id == run_id


async def test_a_long_poll_over_several_queues_ends_at_the_first_message_keeping_the_rest() -> None:
    clock = FakeClock(T0)
    queues = QueueSet(MemoryRunQueue(clock))
    await queues.start()
    try:
        a, b = await queues.get("a"), await queues.get("b")
        waiting = asyncio.create_task(queues.receive("w", ["a", "b"], 10, wait=2.0, hold=30))
        assert await eventually(lambda: len(queues._polls) == 2)  # both long polls in flight
        await b.send(["run-b"])

        got = await asyncio.wait_for(waiting, 5)  # ends at b's message, not after 2 s

        assert [(h.queue, h.delivery.run_id) for h in got] == [("b", "run-b")]
        poll_a = queues._polls["a"]
        assert not poll_a.done()  # never cancelled: it may take messages any moment
        await a.send(["run-a"])
        await asyncio.wait({poll_a}, timeout=5)
        again = await queues.receive("w", ["a", "b"], 10, wait=2.0, hold=30)
        assert [(h.queue, h.delivery.run_id) for h in again] == [("a", "run-a")]
        waiting = asyncio.create_task(queues.receive("w", ["a"], 10, wait=2.0, hold=30))
        assert await eventually(lambda: "a" in queues._polls)
    finally:
        await queues.close()
    assert queues._polls == {} and waiting.done()  # close cancels the polls in flight


async def eventually(probe: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Let the event loop run until ``probe`` holds (a deadline, not a sleep)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not probe():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0)
    return True


async def test_each_receive_starts_at_the_next_queue() -> None:
    queues = QueueSet(MemoryRunQueue(FakeClock(T0)))
    await queues.start()
    try:
        for name in ("a", "b", "c"):
            await (await queues.get(name)).send([f"{name}{i}" for i in range(5)])
        first = [
            (await queues.receive("w", ["a", "b", "c"], 1, wait=0, hold=30))[0].queue
            for _ in range(6)
        ]
    finally:
        await queues.close()
    # Every queue had messages, yet each was read in turn: a busy one never starves the rest.
    assert sorted(first[:3]) == ["a", "b", "c"] and first[3:] == first[:3]
