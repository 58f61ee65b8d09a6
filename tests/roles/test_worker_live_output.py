"""The worker publishes the output of its running runs (``services/worker/live.py``), on the
fake clock with the memory store: about once a second, only when it grew, compare-and-set
(a run that is no longer this worker's takes nothing and is forgotten), within a budget of
bytes per second shared fairly, and the store's window goes with the outcome."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from test_worker import USER, Rig, rig  # noqa: F401 - "rig": the worker rig fixture

from chronoq.domain.live_output import LiveTail
from chronoq.ports.dispatch import ClaimRunsParams, ReapParams
from chronoq.services.worker.live import LivePublisher


def _count_puts(on: Rig) -> list[int]:
    puts: list[int] = []

    async def count(_worker_id: str, outputs: Any) -> None:
        puts.append(len(outputs))

    on.spy.before["put_live_outputs"] = count
    return puts


async def _started(on: Rig) -> tuple[str, str, LiveTail]:
    job_id = await on.submit("fake:prints")
    await on.worker().start()
    await on.clock.advance(0.01)
    (call,) = on.fake.calls.values()
    assert isinstance(call.request.live, LiveTail)
    return job_id, call.request.run_id, call.request.live


async def test_output_reaches_the_store_each_second_it_grew_and_goes_with_the_outcome(
    rig: Rig,  # noqa: F811 - the fixture
) -> None:
    puts = _count_puts(rig)
    _job_id, run_id, tail = await _started(rig)
    tail.feed(b"hello\n")
    await rig.clock.advance(1.0)
    seen = await rig.store.live_output(USER, run_id)
    assert seen.output is not None and (seen.output.start, seen.output.text) == (0, "hello\n")
    assert puts == [1]

    await rig.clock.advance(5.0)
    assert puts == [1], "nothing new: nothing put"

    tail.feed(b"world\x00\n")
    await rig.clock.advance(1.0)
    seen = await rig.store.live_output(USER, run_id)
    assert seen.output.text == "hello\nworld\u2400\n"
    assert puts == [1, 1]

    rig.fake.finish(run_id, output="hello\nworld\n")
    await rig.clock.advance(0.01)
    seen = await rig.store.live_output(USER, run_id)
    assert seen.output is None and seen.status.value == "COMPLETED"
    tail.feed(b"late\n")
    await rig.clock.advance(2.0)
    assert puts == [1, 1], "a finished run is not published"


async def test_a_run_that_is_no_longer_ours_is_refused_and_forgotten(
    rig: Rig,  # noqa: F811 - the fixture
) -> None:
    puts = _count_puts(rig)
    _job_id, run_id, tail = await _started(rig)
    tail.feed(b"first\n")
    await rig.clock.advance(1.0)
    assert puts == [1]

    now = rig.clock.now()  # the run is lost behind the worker's back (before a heartbeat)
    assert await rig.store.reap_lost(ReapParams(now=now, retry_at=now, expire_all=True)) == 1
    tail.feed(b"second\n")
    await rig.clock.advance(1.0)
    assert puts == [1, 1]  # tried once, refused
    assert (await rig.store.live_output(USER, run_id)).output is None
    tail.feed(b"third\n")
    await rig.clock.advance(2.0)
    assert puts == [1, 1], "forgotten after the refusal"


async def test_the_bytes_put_per_second_are_bounded_and_every_run_gets_its_turn(
    rig: Rig,  # noqa: F811 - the fixture
) -> None:
    store, clock = rig.store, rig.clock
    for i in range(3):
        await rig.submit(f"fake:{i}")
    now = clock.now()
    runs = await store.claim_runs(
        ClaimRunsParams(worker_id="w1", now=now, horizon=now,
                        lease_until=now + timedelta(seconds=60))
    )  # fmt: skip
    assert len(runs) == 3
    publisher = LivePublisher(store, "w1", clock, budget=250)  # two 100-byte windows a tick
    tails = [publisher.watch(run) for run in runs]
    for tail in tails:
        tail.feed(b"x" * 100)
    publisher.loop.start()
    await clock.advance(0.01)
    published = [(await store.live_output(USER, r.run_id)).output for r in runs]
    assert sum(o is not None for o in published) == 2
    await clock.advance(1.0)
    published = [(await store.live_output(USER, r.run_id)).output for r in runs]
    assert all(o is not None for o in published)

    for tail in tails:  # all three grow again: the one published last waits this time
        tail.feed(b"y")
    await clock.advance(1.0)
    ends = [(await store.live_output(USER, r.run_id)).output.end for r in runs]
    assert sorted(ends) == [100, 101, 101]
    await publisher.loop.stop()
