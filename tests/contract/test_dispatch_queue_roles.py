"""The roles over QueuedDispatch, in-process on a fake clock: a picker, a worker and the
embedded coordinator (its relay loop) over MemoryStore + MemoryRunQueue. Every run goes
picker -> message -> worker; runs the broker lost are sent again by the leader's relay,
and only the leader relays."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from chronoq.adapters.memory.runqueue import MemoryRunQueue
from chronoq.adapters.queue import QueuedDispatch
from chronoq.domain.retry import RetryPolicy
from chronoq.domain.states import RunStatus
from chronoq.executors.base import ExecutorRegistry
from chronoq.executors.echo import EchoExecutor
from chronoq.ports.jobs import ListJobsParams
from chronoq.services.base import Service
from chronoq.services.coordinator import Coordinator, CoordinatorConfig
from chronoq.services.picker import Picker
from chronoq.services.worker import Worker, WorkerConfig
from chronoq.testing.roles import USER, ClockSleepExecutor, Stack


@dataclass
class Rig:
    stack: Stack
    queue: MemoryRunQueue
    dispatch: QueuedDispatch
    roles: list[Service] = field(default_factory=list)

    async def start(self, role: Service) -> None:
        await role.start()
        self.roles.append(role)

    def coordinator(self, node_id: str = "c1", **options: object) -> Coordinator:
        s = self.stack
        config = CoordinatorConfig(
            node_id=node_id, lease_seconds=s.lease_seconds,
            retry=RetryPolicy(base_seconds=0.0, cap_seconds=0.0), recover_orphans=False,
            member_ttl=s.member_ttl, shard_count=s.shard_count, retention_hours=0.0,
            **options,  # type: ignore[arg-type]
        )  # fmt: skip
        return Coordinator(
            self.dispatch, s.store, s.blob, s.notifier, s.coordination, s.clock, s.metrics,
            config, relay=self.dispatch,
        )  # fmt: skip

    async def cluster(self) -> None:
        s = self.stack
        registry = ExecutorRegistry(EchoExecutor())
        registry.register(ClockSleepExecutor(s.clock))
        await self.start(self.coordinator())
        await self.start(Picker(self.dispatch, s.notifier, s.clock, s.metrics, lookahead=0.5))
        await self.start(
            Worker(self.dispatch, s.blob, s.notifier, s.clock, s.metrics, registry,
                   WorkerConfig(worker_id="w1", lease_seconds=s.lease_seconds))
        )  # fmt: skip

    async def statuses(self) -> list[tuple[int, RunStatus]]:
        store = self.stack.store
        page = await store.list_jobs(ListJobsParams(user_id=USER))
        runs = [r for job in page.items for r in await store.list_runs(USER, job.job_id)]
        return sorted((r.attempt, r.status) for r in runs)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with Stack() as stack:
        queue = MemoryRunQueue(stack.clock)
        dispatch = QueuedDispatch(stack.store, queue, clock=stack.clock)
        await dispatch.start()
        built = Rig(stack, queue, dispatch)
        try:
            yield built
        finally:
            for role in reversed(built.roles):
                await role.stop()
            await dispatch.close()


async def test_jobs_flow_from_picker_to_worker_through_the_queue(rig: Rig) -> None:
    await rig.cluster()
    s = rig.stack
    await s.store.insert_jobs([s.job("sleep:1s") for _ in range(3)] + [s.job(due_in=10)])
    s.notifier.publish("fires")

    async def done() -> bool:
        return [st for _, st in await rig.statuses()] == [RunStatus.COMPLETED] * 4

    await until(rig, done, within=30)
    assert [a for a, _ in await rig.statuses()] == [1, 1, 1, 1]
    await rig.dispatch.settled()
    assert await rig.queue.depth() == 0  # every message acknowledged


async def test_runs_the_broker_lost_are_sent_again_by_the_relay(rig: Rig) -> None:
    s = rig.stack
    await rig.start(rig.coordinator())
    # Fired while no worker runs; then the broker loses every message.
    await s.store.insert_jobs([s.job("sleep:1s") for _ in range(3)])
    picker = Picker(rig.dispatch, s.notifier, s.clock, s.metrics, lookahead=0.5)
    await rig.start(picker)
    await s.clock.run_until(lambda: len(rig.queue._messages) == 3, within=5)
    rig.queue._messages.clear()
    registry = ExecutorRegistry(EchoExecutor())
    registry.register(ClockSleepExecutor(s.clock))
    await rig.start(Worker(rig.dispatch, s.blob, s.notifier, s.clock, s.metrics, registry,
                           WorkerConfig(worker_id="w1")))  # fmt: skip

    async def done() -> bool:
        return [st for _, st in await rig.statuses()] == [RunStatus.COMPLETED] * 3

    took = await until(rig, done, within=30)
    assert took <= 5.0  # within a broker check or two, not the 60 s republish age


class CountingRelay:
    def __init__(self) -> None:
        self.calls: list[datetime] = []

    async def relay(self, now: datetime) -> int:
        self.calls.append(now)
        return 0


async def test_only_the_leader_relays(rig: Rig) -> None:
    s = rig.stack
    relays = {"c1": CountingRelay(), "c2": CountingRelay()}
    for node_id, relay in relays.items():
        coordinator = Coordinator(
            rig.dispatch, s.store, s.blob, s.notifier, s.coordination, s.clock, s.metrics,
            CoordinatorConfig(node_id=node_id, lease_seconds=30, retry=RetryPolicy(),
                              recover_orphans=False, distributed=True),
            relay=relay,
        )  # fmt: skip
        await rig.start(coordinator)
    await s.clock.advance(5)

    counts = sorted(len(r.calls) for r in relays.values())
    assert counts[0] == 0 and counts[1] >= 8  # one leader, relaying every 0.5 s


async def until(rig: Rig, condition: Callable[[], Awaitable[bool]], *, within: float) -> float:
    """Advance fake time in 0.1 s steps until the async ``condition()`` holds."""
    waited = 0.0
    while not await condition():
        assert waited < within, f"not within {within} fake seconds: {await rig.statuses()}"
        await rig.stack.clock.advance(0.1)
        waited += 0.1
    return waited
