"""QueuedDispatch contract: a run queue in front of a store that keeps an outbox
(``chronoq.adapters.queue``), on the memory and PostgreSQL stores with ``MemoryRunQueue``
on a ``FakeClock`` (holds and redeliveries without real waiting). The store is the truth:
a duplicate or stale message leases nothing, a failed or missing send is repaired by the
relay, an emptied broker is rebuilt from the store, a held run's message stays hidden."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from chronoq.adapters.memory import MemoryStore
from chronoq.adapters.memory.runqueue import MemoryRunQueue
from chronoq.adapters.postgres import PostgresStore
from chronoq.adapters.queue import QueuedDispatch, queued_dispatch
from chronoq.adapters.queue.relay import REPUBLISH_AFTER
from chronoq.domain.jobs import ClaimedRun
from chronoq.domain.states import RunStatus
from chronoq.errors import ConfigError, UnavailableError
from chronoq.ports.dispatch import (
    ClaimDueParams,
    ClaimRunsParams,
    ReapParams,
    Relay,
    ReleaseParams,
)
from chronoq.ports.runqueue import Delivery
from chronoq.testing import FakeClock

from .helpers import T0, make_job, outcome

LEASE = 30.0


class FlakyQueue(MemoryRunQueue):
    """A MemoryRunQueue whose next ``fail_sends`` sends fail (the broker is down)."""

    fail_sends = 0
    slow_receive = 0.0
    """Fake seconds each ``receive`` takes (a long poll, a slow broker)."""
    hang: asyncio.Event | None = None
    """Set: ``extend`` and ``ack`` wait for it (a broker that hangs)."""

    async def extend(self, receipts: Sequence[str], hold: float) -> None:
        if self.hang is not None:
            await self.hang.wait()
        await super().extend(receipts, hold)

    async def ack(self, receipts: Sequence[str]) -> None:
        if self.hang is not None:
            await self.hang.wait()
        await super().ack(receipts)

    async def receive(
        self, consumer: str, limit: int, *, wait: float, hold: float
    ) -> list[Delivery]:
        if self.slow_receive:
            await self._clock.advance(self.slow_receive)  # type: ignore[attr-defined]
        return await super().receive(consumer, limit, wait=wait, hold=hold)

    async def send(self, run_ids: Sequence[str]) -> None:
        if self.hang is not None:
            await self.hang.wait()
        if self.fail_sends:
            self.fail_sends -= 1
            raise UnavailableError("the broker is down (test)")
        await super().send(run_ids)

    def flush(self) -> None:
        """Lose every message (a broker restarted empty)."""
        self._messages.clear()


@dataclass
class Rig:
    clock: FakeClock
    store: MemoryStore | PostgresStore
    queue: FlakyQueue
    dispatch: QueuedDispatch

    def now(self) -> datetime:
        return self.clock.now()

    async def fire(self, *, due_in: float = 0.0) -> str:
        """Submit a job due in ``due_in`` seconds and claim its fire; its run id."""
        job = make_job(next_fire_at=self.now() + timedelta(seconds=due_in))
        await self.store.insert_jobs([job])
        now = self.now()
        horizon = now + timedelta(seconds=max(due_in, 0.0))
        (run,) = await self.dispatch.claim_due(
            ClaimDueParams(shards=None, now=now, horizon=horizon)
        )
        await self.dispatch.settled()  # its send, done in the background
        return run.run_id

    async def claim(self, worker: str = "w1", limit: int = 100) -> list[ClaimedRun]:
        now = self.now()
        claimed = await self.dispatch.claim_runs(
            ClaimRunsParams(
                worker_id=worker, now=now, horizon=now + timedelta(seconds=0.5),
                lease_until=now + timedelta(seconds=LEASE), limit=limit,
            )
        )  # fmt: skip
        await self.dispatch.settled()  # its acks and extends, done in the background
        return claimed


async def _status(rig: Rig, run_id: str) -> RunStatus:
    if isinstance(rig.store, MemoryStore):
        return rig.store._db().runs[run_id].status
    conn = rig.store._connected()
    value = await conn.fetchval("SELECT status FROM job_runs WHERE run_id = $1", run_id)
    return RunStatus(value)


async def _lease_until(rig: Rig, run_id: str) -> datetime:
    if isinstance(rig.store, MemoryStore):
        value = rig.store._db().runs[run_id].lease_until
    else:
        conn = rig.store._connected()
        value = await conn.fetchval("SELECT lease_until FROM job_runs WHERE run_id = $1", run_id)
    assert value is not None
    return value


@pytest.fixture(params=["memory", "postgres"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    clock = FakeClock(T0)
    if request.param == "memory":
        store: MemoryStore | PostgresStore = MemoryStore()
    else:
        store = PostgresStore(request.getfixturevalue("pg_database"), min_size=1, max_size=4)
    queue = FlakyQueue(clock, max_receives=3)
    dispatch = QueuedDispatch(store, queue, receive_wait=0.0, clock=clock)
    await dispatch.start()
    try:
        yield Rig(clock, store, queue, dispatch)
    finally:
        await dispatch.close()


async def test_a_claimed_fire_is_sent_at_once_and_leased_through_its_message(rig: Rig) -> None:
    run_id = await rig.fire()
    assert await rig.queue.depth() == 1
    assert await rig.dispatch.relay(rig.now() + timedelta(seconds=10)) == 0  # marked as sent

    (claimed,) = await rig.claim("w1")

    assert claimed.run_id == run_id
    assert await _status(rig, run_id) is RunStatus.RUNNING
    assert await rig.claim("w2") == []  # the message is held by w1
    done = outcome(claimed, RunStatus.COMPLETED, worker_id="w1", started_at=rig.now())
    assert await rig.dispatch.complete_runs([done]) == [True]
    await rig.dispatch.settled()
    assert await rig.queue.depth() == 0  # acknowledged with the outcome


async def test_a_slow_receive_still_leases_for_a_whole_lease(rig: Rig) -> None:
    run_id = await rig.fire()
    rig.queue.slow_receive = LEASE - 1  # the caller's lease had nearly run out meanwhile

    (claimed,) = await rig.claim("w1")

    assert claimed.run_id == run_id
    lease_until = await _lease_until(rig, run_id)
    assert lease_until == rig.now() + timedelta(seconds=LEASE)  # from the end of the wait


async def test_a_duplicate_delivery_leases_nothing_and_is_acknowledged(rig: Rig) -> None:
    run_id = await rig.fire()
    await rig.queue.send([run_id, run_id])  # the broker delivered it more than once

    claimed = await rig.claim("w1")
    assert [c.run_id for c in claimed] == [run_id]  # one lease for three messages
    assert await rig.queue.depth() == 1  # only the leased run's message is still held
    assert await rig.claim("w2") == []

    # A late duplicate after the run ended: acknowledged, executes nothing.
    done = outcome(claimed[0], RunStatus.COMPLETED, worker_id="w1", started_at=rig.now())
    await rig.dispatch.complete_runs([done])
    await rig.dispatch.settled()
    await rig.queue.send([run_id])
    assert await rig.claim("w2") == []
    assert await rig.queue.depth() == 0
    assert await _status(rig, run_id) is RunStatus.COMPLETED


async def test_forged_and_unknown_ids_lease_nothing(rig: Rig) -> None:
    await rig.queue.send(["forged; rm -rf /", make_job().job_id])
    assert await rig.claim("w1") == []
    assert await rig.queue.depth() == 0


async def test_a_failed_send_after_the_commit_loses_nothing(rig: Rig) -> None:
    rig.queue.fail_sends = 1
    run_id = await rig.fire()  # committed; the send failed; claim_due still answers

    assert await rig.queue.depth() == 0
    assert await _status(rig, run_id) is RunStatus.QUEUED
    assert await rig.dispatch.relay(rig.now()) == 0  # too fresh: its picker may be sending
    await rig.clock.advance(1)
    assert await rig.dispatch.relay(rig.now()) == 1
    assert [c.run_id for c in await rig.claim("w1")] == [run_id]


async def test_a_crash_between_send_and_mark_sends_twice_and_runs_once(rig: Rig) -> None:
    job = make_job(next_fire_at=rig.now())
    await rig.store.insert_jobs([job])
    (run,) = await rig.store.claim_due(
        ClaimDueParams(shards=None, now=rig.now(), horizon=rig.now())
    )
    await rig.queue.send([run.run_id])  # ... and the process died before mark_published
    await rig.clock.advance(3)

    assert await rig.dispatch.relay(rig.now()) == 1
    assert await rig.queue.depth() == 2
    assert [c.run_id for c in await rig.claim("w1")] == [run.run_id]
    assert await rig.claim("w2") == []


async def test_an_emptied_broker_is_rebuilt_from_the_store(rig: Rig) -> None:
    ids = {await rig.fire() for _ in range(3)}
    later = await rig.fire(due_in=60)  # not due soon: no message yet, none needed
    rig.queue.flush()
    await rig.clock.advance(1)

    assert await rig.dispatch.relay(rig.now()) == 3  # depth 0: nothing there is trusted
    assert {c.run_id for c in await rig.claim("w1")} == ids
    await rig.clock.advance(57)
    assert await rig.dispatch.relay(rig.now()) == 1
    assert [c.run_id for c in await rig.claim("w1")] == [later]


async def test_a_lost_message_is_sent_again_after_the_republish_age(rig: Rig) -> None:
    lost, kept = await rig.fire(), await rig.fire()
    (entry,) = [k for k, m in rig.queue._messages.items() if m.run_id == lost]
    del rig.queue._messages[entry]  # the broker lost one message but is not empty

    await rig.clock.advance(REPUBLISH_AFTER / 2)
    assert await rig.dispatch.relay(rig.now()) == 0
    await rig.clock.advance(REPUBLISH_AFTER / 2 + 1)
    assert await rig.dispatch.relay(rig.now()) == 2  # both still QUEUED that long after
    assert sorted(c.run_id for c in await rig.claim("w1")) == sorted([lost, kept])
    assert await rig.queue.depth() == 2  # kept's first message was a duplicate: acked


async def test_extend_keeps_a_running_runs_message_hidden(rig: Rig) -> None:
    run_id = await rig.fire()
    (claimed,) = await rig.claim("w1")
    assert await rig.dispatch.mark_started("w1", [run_id], rig.now()) == [run_id]

    for _ in range(4):  # 80 s of heartbeats, far past one hold of 30 s
        await rig.clock.advance(20)
        until = rig.now() + timedelta(seconds=LEASE)
        renewal = await rig.dispatch.extend_leases("w1", [run_id], until)
        await rig.dispatch.settled()
        assert renewal.held == [run_id]
        assert await rig.claim("w2") == []  # never redelivered while it heartbeats

    done = outcome(claimed, RunStatus.COMPLETED, worker_id="w1", started_at=rig.now())
    assert await rig.dispatch.complete_runs([done]) == [True]
    await rig.dispatch.settled()
    assert await rig.queue.depth() == 0


async def test_a_run_that_could_not_start_lets_its_message_go(rig: Rig) -> None:
    run_id = await rig.fire()
    await rig.claim("w1")
    params = ReapParams(now=rig.now(), retry_at=rig.now(), live_workers=frozenset())
    assert await rig.dispatch.reap_lost(params) == 1  # w1 was presumed dead meanwhile

    assert await rig.dispatch.mark_started("w1", [run_id], rig.now()) == []
    await rig.dispatch.settled()
    assert await rig.queue.depth() == 0  # w1's message is spent; the relay sends anew
    await rig.clock.advance(1)
    assert await rig.dispatch.relay(rig.now()) == 1
    assert [c.run_id for c in await rig.claim("w2")] == [run_id]


async def test_without_extension_the_redelivery_leases_nothing(rig: Rig) -> None:
    run_id = await rig.fire()
    await rig.claim("w1")
    await rig.clock.advance(LEASE + 1)  # w1 stopped heartbeating; its lease expired too

    assert await rig.claim("w2") == []  # redelivered, but the run is RUNNING: acked
    assert await rig.queue.depth() == 0
    assert await _status(rig, run_id) is RunStatus.RUNNING


async def test_a_hanging_broker_never_delays_claims_heartbeats_or_outcomes(rig: Rig) -> None:
    run_id = await rig.fire()
    (claimed,) = await rig.claim("w1")
    rig.queue.hang = asyncio.Event()

    job = make_job(next_fire_at=rig.now())
    await rig.store.insert_jobs([job])
    params = ClaimDueParams(shards=None, now=rig.now(), horizon=rig.now())
    (new,) = await asyncio.wait_for(rig.dispatch.claim_due(params), 5)  # the picker goes on

    until = rig.now() + timedelta(seconds=LEASE)
    renewal = await asyncio.wait_for(rig.dispatch.extend_leases("w1", [run_id], until), 5)
    assert renewal.held == [run_id]
    done = outcome(claimed, RunStatus.COMPLETED, worker_id="w1", started_at=rig.now())
    assert await asyncio.wait_for(rig.dispatch.complete_runs([done]), 5) == [True]
    assert await _status(rig, run_id) is RunStatus.COMPLETED

    rig.queue.hang.set()  # the broker answers again: the ack and the send land
    await rig.dispatch.settled()
    assert [c.run_id for c in await rig.claim("w2")] == [new.run_id]


@pytest.mark.parametrize("how", ["reaped", "released"])
async def test_a_requeued_run_is_sent_again_and_leased_once(rig: Rig, how: str) -> None:
    run_id = await rig.fire()
    await rig.claim("w1")  # leased, never started
    if how == "reaped":
        params = ReapParams(now=rig.now(), retry_at=rig.now(), live_workers=frozenset())
        assert await rig.dispatch.reap_lost(params) == 1
    else:
        params2 = ReleaseParams(worker_id="w1", run_ids=[run_id], now=rig.now())
        assert await rig.dispatch.release_runs(params2) == 1
    assert await _status(rig, run_id) is RunStatus.QUEUED

    await rig.clock.advance(1)  # past the settling time of new runs
    assert await rig.dispatch.relay(rig.now()) == 1
    assert [c.run_id for c in await rig.claim("w2")] == [run_id]
    await rig.clock.advance(LEASE + 1)  # w1's old message, if still there, comes back
    assert await rig.claim("w3") == []


async def test_a_retry_attempt_is_sent_when_it_comes_due(rig: Rig) -> None:
    run_id = await rig.fire()
    (claimed,) = await rig.claim("w1")
    retry_at = rig.now() + timedelta(seconds=20)
    failed = outcome(claimed, RunStatus.RETRY_SCHEDULED, worker_id="w1", started_at=rig.now(),
                     retry_at=retry_at)  # fmt: skip
    assert await rig.dispatch.complete_runs([failed]) == [True]

    assert await rig.dispatch.relay(rig.now()) == 0
    await rig.clock.advance(16)
    assert await rig.dispatch.relay(rig.now()) == 1
    (second,) = await rig.claim("w2")
    assert (second.attempt, second.available_at) == (2, retry_at)
    assert second.run_id != run_id


async def test_a_dead_lettered_message_is_only_a_hint(rig: Rig) -> None:
    run_id = await rig.fire()
    for _ in range(3):  # receivers that die before claiming (the store was down, say)
        assert len(await rig.queue.receive("ghost", 10, wait=0, hold=1)) == 1
        await rig.clock.advance(2)
    assert await rig.claim("w1") == []  # the fourth receive dead-letters it
    assert await _status(rig, run_id) is RunStatus.QUEUED  # the store did not give up

    assert await rig.dispatch.relay(rig.now()) == 1
    assert [c.run_id for c in await rig.claim("w1")] == [run_id]


async def test_the_factory_checks_store_and_url() -> None:
    assert isinstance(queued_dispatch(MemoryStore(), "redis://127.0.0.1:1/0"), Relay)
    with pytest.raises(ConfigError, match="PostgreSQL"):
        queued_dispatch(object(), "redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="redis:// or sqs://"):
        queued_dispatch(MemoryStore(), "amqp://127.0.0.1/")
