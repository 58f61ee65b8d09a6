"""The RunQueue contract (chronoq.ports.runqueue), on every adapter: in memory (on a
``FakeClock``), Redis Streams (a private ``redis-server`` per test) and SQS (moto's
server for the session, a fresh queue per test).

Time passes differently per adapter, so every test that needs a hold to run out polls
with a deadline (``QueueHarness.eventually``): each poll advances the fake clock by a
step (memory) or waits a step of real time. ``HOLD`` is 1 s (SQS visibility is whole
seconds); ``LONG`` is a hold that must not run out during a test. Queues stay small:
moto slows down with queue depth.

``named`` (the Chronoq queues on one broker) has its own tests after the generic ones:
each runs over every adapter too, and ``QueueHarness.listing`` shows what exists in the
broker (Redis keys, SQS queues, memory's named queues) to prove a refused name created
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from chronoq.domain.queues import DEFAULT_QUEUE
from chronoq.errors import ConfigError, UnavailableError, ValidationError
from chronoq.ports.runqueue import Delivery, RunQueue
from chronoq.testing import FakeClock, MemoryRunQueue
from tests.support.redis_server import RedisFactory, redis_factory  # noqa: F401 - a fixture
from tests.support.sqs_server import sqs_factory, sqs_server, sqs_url  # noqa: F401 - fixtures
from tests.support.waiting import poll

T = TypeVar("T")

HOLD = 1.0
LONG = 60.0
STEP = 0.05
DEADLINE = 15.0


@dataclass(slots=True)
class QueueHarness:
    kind: str
    queue: RunQueue
    make: Callable[[int], Awaitable[RunQueue]]
    """Another started client of a fresh queue with this ``max_receives`` (or, with 0,
    of the same queue as ``queue``)."""
    clock: FakeClock | None
    listing: Callable[[], Awaitable[set[str]]]
    """What exists in the broker of ``queue`` (Redis keys, SQS queue names, memory's
    named queues)."""
    opened: list[RunQueue] = field(default_factory=list)

    def now(self) -> float:
        return self.clock.monotonic() if self.clock else time.monotonic()

    async def tick(self) -> None:
        if self.clock:
            await self.clock.advance(STEP)
        else:
            await asyncio.sleep(STEP)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro``, letting the fake clock run meanwhile (a receive that waits)."""
        task = asyncio.ensure_future(coro)
        while not task.done():
            await asyncio.wait({task}, timeout=0.01)
            if self.clock and not task.done():
                await self.clock.advance(STEP)
        return task.result()

    async def eventually(self, probe: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + DEADLINE
        while True:
            value = await probe()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {DEADLINE} s")
            await self.tick()

    async def other(self) -> RunQueue:
        """A second client of the same queue (memory: the same object)."""
        return await self.make(0)


@pytest.fixture(params=["memory", "redis", "sqs"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[QueueHarness]:
    opened: list[RunQueue] = []
    clock: FakeClock | None = None
    listing: Callable[[], Awaitable[set[str]]]
    admin = contextlib.AsyncExitStack()

    async def started(queue: RunQueue) -> RunQueue:
        await queue.start()
        opened.append(queue)
        return queue

    if request.param == "memory":
        clock = FakeClock()
        first = memory = MemoryRunQueue(clock)

        async def listing() -> set[str]:
            return set(memory._named)  # nothing else to look at in memory

        async def make(max_receives: int) -> RunQueue:
            if not max_receives:
                return first
            return await started(MemoryRunQueue(clock, max_receives=max_receives))

    elif request.param == "redis":
        import redis.asyncio as aioredis

        from chronoq.adapters.redis import run_queue as redis_queue

        server = request.getfixturevalue("redis_factory")(durable=False)
        first = redis_queue(server.url)
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        admin.push_async_callback(client.aclose)

        async def listing() -> set[str]:
            return set(await client.keys("*"))

        async def make(max_receives: int) -> RunQueue:
            key = f"&key=q{len(opened)}" if max_receives else ""
            url = f"{server.url}?max_receives={max_receives or 5}{key}"
            return await started(redis_queue(url))

    else:
        from aiobotocore.session import get_session

        from chronoq.adapters.sqs import run_queue as sqs_queue
        from chronoq.adapters.sqs.url import parse_sqs_url

        server = request.getfixturevalue("sqs_server")
        url = sqs_url(server)
        first = sqs_queue(url)
        sqs = await admin.enter_async_context(
            get_session().create_client(
                "sqs",
                region_name="us-east-1",
                endpoint_url=server.endpoint,
                aws_access_key_id="chronoq",
                aws_secret_access_key="chronoq",
            )
        )

        async def listing() -> set[str]:
            reply = await sqs.list_queues(QueueNamePrefix=parse_sqs_url(url).queue)
            return {u.rsplit("/", 1)[-1] for u in reply.get("QueueUrls", [])}

        async def make(max_receives: int) -> RunQueue:
            return await started(sqs_queue(sqs_url(server, max_receives) if max_receives else url))

    await started(first)
    try:
        yield QueueHarness(request.param, first, make, clock, listing, opened)
    finally:
        for queue in opened:
            await queue.close()
        await admin.aclose()


async def receive_all(h: QueueHarness, queue: RunQueue, count: int, hold: float) -> list[Delivery]:
    """Receive until ``count`` messages came (SQS may hand out fewer per call)."""
    got: list[Delivery] = []

    async def probe() -> bool:
        got.extend(await queue.receive("c1", count - len(got), wait=0, hold=hold))
        return len(got) >= count

    await h.eventually(probe)
    return got


async def test_send_receive_ack(harness: QueueHarness) -> None:
    h = harness
    await h.queue.send(["r1", "r2", "r3"])
    got = await receive_all(h, h.queue, 3, HOLD)
    assert sorted(d.run_id for d in got) == ["r1", "r2", "r3"]
    assert [d.deliveries for d in got] == [1, 1, 1]
    assert len({d.receipt for d in got}) == 3
    await h.queue.ack([d.receipt for d in got])
    assert await h.eventually(lambda: _is(h.queue.depth(), 0))
    later = h.now() + 1.3 * HOLD
    while h.now() < later:  # acknowledged for good: nothing comes back after the hold
        assert await h.queue.receive("c1", 10, wait=0, hold=HOLD) == []
        await h.tick()


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_unacknowledged_comes_back_after_hold(harness: QueueHarness) -> None:
    h = harness
    other = await h.other()
    await h.queue.send(["r1"])
    [first] = await receive_all(h, h.queue, 1, HOLD)
    assert await other.receive("c2", 10, wait=0, hold=HOLD) == []  # hidden meanwhile
    again = await h.eventually(lambda: other.receive("c2", 10, wait=0, hold=HOLD))
    assert [(d.run_id, d.deliveries) for d in again] == [("r1", 2)]
    assert again[0].receipt != first.receipt


async def test_extend_keeps_it_hidden(harness: QueueHarness) -> None:
    h = harness
    other = await h.other()
    await h.queue.send(["r1"])
    hold = HOLD  # a heartbeat every ~0.1 s: slack for a busy machine
    [held] = await receive_all(h, h.queue, 1, hold)
    until = h.now() + 2 * hold
    while h.now() < until:  # heartbeating: two holds pass, nobody else gets it
        await h.queue.extend([held.receipt], hold)
        for _ in range(2):
            assert await other.receive("c2", 10, wait=0, hold=hold) == []
            await h.tick()
    again = await h.eventually(lambda: other.receive("c2", 10, wait=0, hold=hold))
    assert [(d.run_id, d.deliveries) for d in again] == [("r1", 2)]


async def test_extend_can_shorten_the_hold(harness: QueueHarness) -> None:
    """A worker that received a run too early hides it only until it is due."""
    h = harness
    other = await h.other()
    await h.queue.send(["r1", "r2"])
    held = await receive_all(h, h.queue, 2, LONG)
    by_run = {d.run_id: d for d in held}
    await h.queue.extend([by_run["r1"].receipt], 0)  # visible again at once
    await h.queue.extend([by_run["r2"].receipt], HOLD)  # visible again after HOLD
    first = await other.receive("c2", 10, wait=0, hold=LONG)
    assert [(d.run_id, d.deliveries) for d in first] == [("r1", 2)]
    second = await h.eventually(lambda: other.receive("c2", 10, wait=0, hold=LONG))
    assert [(d.run_id, d.deliveries) for d in second] == [("r2", 2)]


async def test_extend_with_a_superseded_receipt_is_ignored(harness: QueueHarness) -> None:
    h = harness
    if h.kind == "sqs":
        pytest.skip("SQS may honour a superseded receipt handle (moto does)")
    other = await h.other()
    await h.queue.send(["r1"])
    [stale] = await receive_all(h, h.queue, 1, HOLD)
    [taken] = await h.eventually(lambda: other.receive("c2", 10, wait=0, hold=HOLD))
    await h.queue.extend([stale.receipt], LONG)  # must not hide it from a third receiver
    third = await h.eventually(lambda: other.receive("c3", 10, wait=0, hold=HOLD))
    assert [(d.run_id, d.deliveries) for d in third] == [("r1", 3)]
    assert taken.deliveries == 2


async def test_two_consumers_never_hold_one_message_at_once(harness: QueueHarness) -> None:
    h = harness
    other = await h.other()
    runs = [f"r{i}" for i in range(20)]
    await h.queue.send(runs)
    seen: list[str] = []

    async def both() -> bool:
        batches = await asyncio.gather(
            h.queue.receive("c1", 3, wait=0, hold=LONG), other.receive("c2", 3, wait=0, hold=LONG)
        )
        seen.extend(d.run_id for batch in batches for d in batch)
        return len(seen) >= len(runs)

    await h.eventually(both)
    assert sorted(seen) == sorted(runs)  # each exactly once while held


async def test_unknown_receipts_are_fine(harness: QueueHarness) -> None:
    h = harness
    await h.queue.send(["r1"])
    [held] = await receive_all(h, h.queue, 1, LONG)
    junk = ["nonsense", "0-1/1/c1", "99.1", "x" * 40]
    await h.queue.extend(junk, HOLD)
    await h.queue.ack(junk)
    await h.queue.ack([held.receipt])
    await h.queue.ack([held.receipt])  # twice: still fine
    assert await h.eventually(lambda: _is(h.queue.depth(), 0))


async def test_wait_bounds_receive(harness: QueueHarness) -> None:
    h = harness
    start = h.now()
    assert await h.run(h.queue.receive("c1", 5, wait=1.0, hold=HOLD)) == []
    took = h.now() - start
    assert 0.9 <= took < 4.0, took
    start = h.now()
    assert await h.queue.receive("c1", 5, wait=0, hold=HOLD) == []
    assert h.now() - start < 1.0
    # A message sent during a long wait ends it early.
    start = h.now()
    waiting = asyncio.ensure_future(h.run(h.queue.receive("c1", 5, wait=5.0, hold=HOLD)))
    await asyncio.sleep(0.2)
    await h.queue.send(["r1"])
    got = await waiting
    assert [d.run_id for d in got] == ["r1"]
    assert h.now() - start < 4.5


async def test_dead_letter_after_max_receives(harness: QueueHarness) -> None:
    h = harness
    queue = await h.make(2)
    await queue.send(["r1", "r2"])
    counts: list[int] = []

    async def redelivered() -> bool:
        for delivery in await queue.receive("c1", 10, wait=0, hold=HOLD):
            if delivery.run_id == "r1":
                counts.append(delivery.deliveries)
            else:
                await queue.ack([delivery.receipt])  # r2 is done on its first delivery
        return len(counts) >= 2

    await h.eventually(redelivered)
    assert counts == [1, 2]
    dead: list[str] = []

    async def drained() -> bool:
        assert await queue.receive("c1", 10, wait=0, hold=HOLD) == []  # never a third time
        dead.extend(await queue.drain_dead(10))
        return bool(dead)

    await h.eventually(drained)
    assert dead == ["r1"]
    assert await queue.drain_dead(10) == []
    assert await h.eventually(lambda: _is(queue.depth(), 0))


async def test_depth_counts_waiting_and_in_flight(harness: QueueHarness) -> None:
    h = harness
    assert await h.queue.depth() == 0
    await h.queue.send(["r1", "r2", "r3"])
    assert await h.eventually(lambda: _is(h.queue.depth(), 3))
    [held] = await receive_all(h, h.queue, 1, LONG)
    assert await h.queue.depth() == 3
    await h.queue.ack([held.receipt])
    assert await h.eventually(lambda: _is(h.queue.depth(), 2))


# -- named queues (RunQueue.named) ---------------------------------------------------------


async def started_named(queue: RunQueue, name: str) -> RunQueue:
    named = queue.named(name)
    await named.start()
    return named


async def test_a_named_queue_keeps_its_messages_to_itself(harness: QueueHarness) -> None:
    """Sent to ``a``: received from ``a`` (also through a second client of the broker),
    never from ``b`` nor from the default queue."""
    h = harness
    a, b = await started_named(h.queue, "a"), await started_named(h.queue, "b")
    other = await h.other()  # memory: the same object (the in-process roles share one)
    a2, b2 = await started_named(other, "a"), await started_named(other, "b")
    await a.send(["ra"])
    await b.send(["rb"])
    assert await h.eventually(lambda: _is(a.depth(), 1))
    assert await h.eventually(lambda: _is(b.depth(), 1))
    assert await h.queue.depth() == 0
    assert [d.run_id for d in await receive_all(h, b2, 1, LONG)] == ["rb"]
    # "ra" is waiting, visible, in queue a: neither b nor the default queue gets it.
    assert await h.run(b2.receive("c2", 10, wait=1, hold=HOLD)) == []
    assert await h.run(h.queue.receive("c1", 10, wait=1, hold=HOLD)) == []
    assert await h.run(other.receive("c2", 10, wait=1, hold=HOLD)) == []
    [got] = await receive_all(h, a2, 1, LONG)
    assert (got.run_id, got.deliveries) == ("ra", 1)
    await a.ack([got.receipt])  # a receipt of queue a, acknowledged through either client
    assert await h.eventually(lambda: _is(a2.depth(), 0))
    assert await b.depth() == 1


async def test_named_is_memoized_and_default_is_the_base(harness: QueueHarness) -> None:
    base = harness.queue
    assert base.named(DEFAULT_QUEUE) is base
    a = base.named("a")
    assert a is not base
    assert base.named("a") is a
    assert a.named("a") is a
    assert a.named("b") is base.named("b")
    assert a.named(DEFAULT_QUEUE) is base
    assert base.named("a.b") is not base.named("a_b")  # one-to-one, also on SQS
    other = await harness.other()
    if other is not base:  # another client of the broker: its own objects, same queues
        assert other.named("a") is other.named("a") and other.named("a") is not a


async def test_named_queues_have_their_own_depth(harness: QueueHarness) -> None:
    h = harness
    a, b = await started_named(h.queue, "a"), await started_named(h.queue, "b")
    await a.send(["r1", "r2", "r3"])
    await h.queue.send(["r0"])
    assert await h.eventually(lambda: _is(a.depth(), 3))
    assert await h.eventually(lambda: _is(h.queue.depth(), 1))
    assert await b.depth() == 0
    [held] = await receive_all(h, a, 1, LONG)
    await a.ack([held.receipt])
    assert await h.eventually(lambda: _is(a.depth(), 2))
    assert await h.queue.depth() == 1


async def test_named_queues_have_their_own_dead_letters(harness: QueueHarness) -> None:
    """A named queue dead-letters after the base's ``max_receives``, into its own
    dead-letter queue: the base's and another named queue's stay empty."""
    h = harness
    base = await h.make(2)
    a, b = await started_named(base, "a"), await started_named(base, "b")
    await a.send(["r1"])
    await base.send(["r0"])
    counts: list[int] = []

    async def redelivered() -> bool:
        counts.extend(d.deliveries for d in await a.receive("c1", 10, wait=0, hold=HOLD))
        return len(counts) >= 2

    await h.eventually(redelivered)
    assert counts == [1, 2]
    dead: list[str] = []

    async def drained() -> bool:
        assert await a.receive("c1", 10, wait=0, hold=HOLD) == []  # never a third time
        assert await base.drain_dead(10) == [] and await b.drain_dead(10) == []
        dead.extend(await a.drain_dead(10))
        return bool(dead)

    await h.eventually(drained)
    assert dead == ["r1"]
    assert await h.eventually(lambda: _is(a.depth(), 0))
    assert await base.depth() == 1  # r0 untouched
    assert [d.run_id for d in await receive_all(h, base, 1, LONG)] == ["r0"]


@pytest.mark.parametrize("name", ["", "a/b", "x" * 65, "a\x00b", "a b", "a:b", None])
async def test_a_bad_queue_name_is_refused_and_creates_nothing(
    harness: QueueHarness, name: Any
) -> None:
    h = harness
    before = await h.listing()
    for queue in (h.queue, h.queue.named("ok")):
        with pytest.raises(ValidationError) as caught:
            queue.named(name)
        assert caught.value.field == "queue"
    assert await h.listing() == before | ({"ok"} if h.kind == "memory" else set())
    a = await started_named(h.queue, "a")  # the listing does see a queue created
    await a.send(["r1"])
    assert await h.eventually(lambda: _grew(h.listing(), before))


async def _grew(listing: Awaitable[set[str]], before: set[str]) -> bool:
    return len(await listing - before) >= 1


async def test_closing_the_base_closes_the_named_queues(harness: QueueHarness) -> None:
    h = harness
    base = await h.make(5)
    a, b = base.named("a"), base.named("b")
    with pytest.raises(UnavailableError):  # not started until start is called on it
        await a.send(["r0"])
    await a.start()
    await b.start()
    await b.close()  # closes b only
    with pytest.raises(UnavailableError):
        await b.receive("c1", 10, wait=0, hold=HOLD)
    await a.send(["r1"])
    await base.send(["r2"])
    assert [d.run_id for d in await receive_all(h, a, 1, LONG)] == ["r1"]
    assert [d.run_id for d in await receive_all(h, base, 1, LONG)] == ["r2"]
    await base.close()
    for queue in (a, b, base):
        with pytest.raises(UnavailableError):
            await queue.receive("c1", 10, wait=0, hold=HOLD)
        with pytest.raises(UnavailableError):
            await queue.send(["r3"])
        with pytest.raises(UnavailableError):
            await queue.depth()
    await base.close()  # twice: fine
    assert base.named("a") is a  # still the same object


async def test_redis_named_queue_keys(redis_factory: RedisFactory) -> None:  # noqa: F811
    """The default queue keeps its keys; queue q is ``P:{runq}:q:<q>`` (+ ``:dead``)."""
    import redis.asyncio as aioredis

    from chronoq.adapters.redis import run_queue as redis_queue

    server = redis_factory(durable=False)
    base = redis_queue(f"{server.url}?key=pre&max_receives=1")
    admin = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        await base.start()
        named = await started_named(base, "a.b-C_9")
        await base.send(["r0"])
        await named.send(["r1"])
        assert set(await admin.keys("*")) == {"pre:{runq}", "pre:{runq}:q:a.b-C_9"}
        assert [f for _, f in await admin.xrange("pre:{runq}:q:a.b-C_9")] == [{"run": "r1"}]
        assert [f for _, f in await admin.xrange("pre:{runq}")] == [{"run": "r0"}]
        [held] = await named.receive("c1", 1, wait=0, hold=0)
        assert held.run_id == "r1"
        assert await named.receive("c1", 1, wait=0, hold=0) == []  # over max_receives: dead
        assert await admin.xlen("pre:{runq}:q:a.b-C_9:dead") == 1
        assert await admin.exists("pre:{runq}:dead") == 0
        assert await base.named("a.b-C_9").drain_dead(5) == ["r1"]
    finally:
        await base.close()
        await admin.aclose()


def test_sqs_named_queue_names_fit_and_are_one_to_one() -> None:
    import re

    from chronoq.adapters.sqs.url import named_queue, parse_sqs_url

    sqs_name = re.compile(r"[A-Za-z0-9_-]{1,80}")
    names = ["a", "a.b", "a_b", "A", "x" * 64, "x" * 63 + "y", "-._", "default-"]
    for base in ["t", "t-" + "b" * 73, "c" * 40, "c" * 41, "default"]:
        derived = [named_queue(base, name) for name in names]
        assert len(set(derived)) == len(names), derived
        for name in derived:
            assert len(name) <= 75 and sqs_name.fullmatch(name + "-dead"), name
            assert name != base
    assert named_queue("c" * 75, "a") != named_queue("c" * 74 + "d", "a")  # cut bases
    assert named_queue("t-abc", "a.b").startswith("t-abc-q-a_b-")  # readable
    config = parse_sqs_url("sqs://base")
    assert config.named(DEFAULT_QUEUE) is config
    assert config.named("a").queue == named_queue("base", "a")
    assert config.named("a").dead_queue == named_queue("base", "a") + "-dead"
    with pytest.raises(ValidationError):
        named_queue("base", "a/b")


async def test_sqs_named_queues_of_a_75_character_base(request: pytest.FixtureRequest) -> None:
    """The longest base name the URL allows: its named queues (and their dead-letter
    queues) still fit SQS's 80 characters, on a real server."""
    from chronoq.adapters.sqs import run_queue as sqs_queue

    server = request.getfixturevalue("sqs_server")
    base = sqs_queue(server.url("t-" + uuid.uuid4().hex[:20] + "l" * 53))
    try:
        await base.start()
        for name in ("x" * 64, "a.b", "a_b"):
            queue = await started_named(base, name)
            await queue.send([f"r-{name}"])
        for name in ("x" * 64, "a.b", "a_b"):
            queue = base.named(name)
            got = await poll(lambda q=queue: q.receive("c1", 5, wait=1, hold=LONG), DEADLINE)
            assert [d.run_id for d in got] == [f"r-{name}"]
    finally:
        await base.close()


# -- the brokers' own failures (not memory) ------------------------------------------------


@pytest.fixture(params=["redis", "sqs"])
def broker(request: pytest.FixtureRequest) -> tuple[Any, Callable[[], RunQueue]]:
    """A private server (killed and restarted by the test) and a factory of queues on it."""
    if request.param == "redis":
        from chronoq.adapters.redis import run_queue as redis_queue

        server = request.getfixturevalue("redis_factory")(durable=False)
        return server, lambda: redis_queue(server.url)
    from chronoq.adapters.sqs import run_queue as sqs_queue

    server = request.getfixturevalue("sqs_factory")()
    url = sqs_url(server)
    return server, lambda: sqs_queue(url)


async def test_broker_restarted_empty_works_again(
    broker: tuple[Any, Callable[[], RunQueue]],
) -> None:
    """The seed's TestSQSRestart: the broker dies and comes back without its queue."""
    server, make = broker
    queue = make()
    await queue.start()
    try:
        await queue.send(["before"])
        server.kill()
        with pytest.raises(UnavailableError):
            await queue.send(["while-down"])
        server.start()
        await poll_ok(lambda: queue.send(["after"]))  # the queue (or group) is created again
        got = await queue.receive("c1", 10, wait=1, hold=HOLD)
        assert [(d.run_id, d.deliveries) for d in got] == [("after", 1)]
        await queue.ack([d.receipt for d in got])
        fresh = make()  # and a node starting now finds a working queue
        await fresh.start()
        await fresh.send(["later"])
        assert [d.run_id for d in await queue.receive("c2", 10, wait=1, hold=HOLD)] == ["later"]
        await fresh.close()
    finally:
        await queue.close()


async def test_broker_dying_during_a_wait_ends_it(
    broker: tuple[Any, Callable[[], RunQueue]],
) -> None:
    """A worker blocked in a long poll learns at once that the broker died."""
    server, make = broker
    queue = make()
    await queue.start()
    try:
        waiting = asyncio.ensure_future(queue.receive("c1", 5, wait=10, hold=HOLD))
        await asyncio.sleep(0.5)  # the receive is blocked in the server by now
        started = time.monotonic()
        server.kill()
        with pytest.raises(UnavailableError, match="dispatch"):
            await waiting
        assert time.monotonic() - started < 5
    finally:
        await queue.close()


async def poll_ok(call: Callable[[], Awaitable[None]]) -> None:
    """``call`` until it stops raising UnavailableError (a pooled connection may still
    point at the dead server once)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            await call()
            return
        except UnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(STEP)


async def test_unreachable_broker_is_unavailable_at_start(
    broker: tuple[Any, Callable[[], RunQueue]],
) -> None:
    server, make = broker
    server.kill()
    queue = make()
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="dispatch"):
        await queue.start()
    assert time.monotonic() - started < 15
    await queue.close()


@pytest.mark.parametrize(
    "url",
    [
        "sqs://",
        "sqs://bad.name?endpoint=http://127.0.0.1:1",
        "sqs://q/path",
        "sqs://q?endpoint=ftp://127.0.0.1:1",
        "sqs://q?endpoint=http://127.0.0.1:99999",
        "sqs://q?region=Mars",
        "sqs://q?max_receives=0",
        "sqs://q?max_receives=1001",
        "sqs://q?visibility=3",
        "sqs://" + "q" * 76,
        "redis://127.0.0.1:1/0?max_receives=x",
        "redis://127.0.0.1:1/0?bogus=1",
    ],
)
def test_bad_url_is_one_line_config_error(url: str) -> None:
    from chronoq.adapters import redis, sqs

    factory = sqs.run_queue if url.startswith("sqs") else redis.run_queue
    with pytest.raises(ConfigError) as caught:
        factory(url)
    message = str(caught.value)
    assert message.startswith("dispatch:") and "\n" not in message


async def test_sqs_with_an_endpoint_never_asks_instance_metadata(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credentials configured and a local endpoint: dummy credentials, and no request
    to the EC2 instance metadata service (pointed here at a listener that counts)."""
    from chronoq.adapters.sqs import run_queue as sqs_queue

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_EC2_METADATA_DISABLED"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/chronoq-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/chronoq-aws-credentials")
    asked: list[int] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append(1)
        writer.close()

    listener = await asyncio.start_server(count, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{port}/")
    queue = sqs_queue(sqs_url(request.getfixturevalue("sqs_server")))
    try:
        await queue.start()
        await queue.send(["r1"])
        assert [d.run_id for d in await queue.receive("c1", 1, wait=1, hold=HOLD)] == ["r1"]
    finally:
        await queue.close()
        listener.close()
        await listener.wait_closed()
    assert asked == []


async def test_redis_full_is_unavailable(redis_factory: RedisFactory) -> None:  # noqa: F811
    """A Redis out of memory refuses the send: UnavailableError, not a driver error."""
    import redis.asyncio as aioredis

    from chronoq.adapters.redis import run_queue as redis_queue

    server = redis_factory(durable=False)
    queue = redis_queue(server.url)
    await queue.start()
    admin = aioredis.Redis.from_url(server.url)
    try:
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", 1)
        with pytest.raises(UnavailableError, match="maxmemory"):
            await queue.send(["r1"])
        await admin.config_set("maxmemory", 0)
        await queue.send(["r1"])
        assert [d.run_id for d in await queue.receive("c1", 1, wait=0, hold=HOLD)] == ["r1"]
    finally:
        await admin.aclose()
        await queue.close()
