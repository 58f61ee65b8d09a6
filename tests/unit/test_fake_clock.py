"""FakeClock: time moves only on ``advance`` (or ``jump``), timers fire in deadline order."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest

from chronoq.domain.clock import Clock
from chronoq.testing import FakeClock, settle

START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)


def test_it_is_a_clock_that_starts_where_told() -> None:
    clock: Clock = FakeClock(START, monotonic_start=50.0)
    assert clock.now() == START
    assert clock.monotonic() == 50.0


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError):
        FakeClock(datetime(2026, 1, 5, 9, 0, 0))


async def test_advance_moves_wall_and_monotonic_together() -> None:
    clock = FakeClock(START, monotonic_start=0.0)
    await clock.advance(2.5)
    assert clock.monotonic() == 2.5
    assert clock.now() == START + timedelta(seconds=2.5)


async def test_timers_fire_in_deadline_order_with_time_at_their_deadline() -> None:
    clock = FakeClock(START, monotonic_start=0.0)
    fired: list[tuple[str, float, datetime]] = []

    def record(name: str) -> None:
        fired.append((name, clock.monotonic(), clock.now()))

    clock.call_later(3, record, "c")
    clock.call_later(1, record, "a")
    clock.call_later(2, record, "b1")
    clock.call_later(2, record, "b2")  # same deadline: in the order scheduled
    clock.call_later(10, record, "later")

    await clock.advance(5)

    assert [(n, t) for n, t, _ in fired] == [("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("c", 3.0)]
    assert [w for *_, w in fired] == [START + timedelta(seconds=s) for s in (1, 2, 2, 3)]
    assert clock.monotonic() == 5.0
    assert clock.pending == 1


async def test_a_timer_scheduled_by_a_timer_fires_in_the_same_advance() -> None:
    clock = FakeClock(START, monotonic_start=0.0)
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(clock.monotonic())
        clock.call_later(1, tick)

    clock.call_later(1, tick)
    await clock.advance(3.5)

    assert ticks == [1.0, 2.0, 3.0]
    assert clock.pending == 1  # the tick at 4.0


async def test_sleep_wakes_exactly_at_its_deadline() -> None:
    clock = FakeClock(START, monotonic_start=0.0)
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(5)
        woke.append(clock.monotonic())

    task = asyncio.create_task(sleeper())
    await clock.advance(4.9)
    assert woke == []
    assert not task.done()
    await clock.advance(1)
    assert woke == [5.0]
    assert task.done()
    assert clock.pending == 0


@pytest.mark.parametrize("seconds", [0, -3])
async def test_a_sleep_of_no_time_needs_no_advance(seconds: float) -> None:
    clock = FakeClock(START)
    await asyncio.wait_for(clock.sleep(seconds), timeout=5)  # a real guard: it must not hang
    assert clock.pending == 0
    assert clock.now() == START


async def test_a_cancelled_sleep_leaves_no_timer() -> None:
    clock = FakeClock(START)
    task = asyncio.create_task(clock.sleep(60))
    await settle()
    assert clock.pending == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending == 0


async def test_wait_returns_true_when_the_event_is_set_in_time() -> None:
    clock = FakeClock(START, monotonic_start=0.0)
    event = asyncio.Event()
    result: list[tuple[bool, float]] = []

    async def waiter() -> None:
        result.append((await clock.wait(event, 10), clock.monotonic()))

    task = asyncio.create_task(waiter())
    clock.call_later(2, event.set)
    await clock.advance(3)

    assert task.done()
    assert result == [(True, 2.0)]
    assert clock.pending == 0  # its timeout timer was cancelled


async def test_wait_returns_false_at_the_timeout() -> None:
    clock = FakeClock(START, monotonic_start=0.0)
    event = asyncio.Event()
    task = asyncio.create_task(clock.wait(event, 4))
    await clock.advance(3.999)
    assert not task.done()
    await clock.advance(0.001)
    assert task.done()
    assert task.result() is False


async def test_wait_without_time_answers_at_once() -> None:
    clock = FakeClock(START)
    event = asyncio.Event()
    assert await clock.wait(event, 0) is False
    event.set()
    assert await clock.wait(event, 0) is True
    assert await clock.wait(event, 100) is True
    assert clock.pending == 0


async def test_call_later_passes_arguments_and_cancel_stops_it() -> None:
    clock = FakeClock(START)
    calls: list[tuple[int, str]] = []
    kept = clock.call_later(1, lambda n, s: calls.append((n, s)), 7, "x")
    dropped = clock.call_later(1, lambda: calls.append((0, "cancelled")))
    assert clock.pending == 2

    dropped.cancel()
    assert clock.pending == 1
    await clock.advance(2)

    assert calls == [(7, "x")]
    kept.cancel()  # after it ran: harmless
    assert clock.pending == 0


async def test_call_later_with_no_delay_runs_on_the_next_loop_iteration() -> None:
    clock = FakeClock(START)
    calls: list[str] = []
    clock.call_later(0, calls.append, "now")
    clock.call_later(-1, calls.append, "overdue")
    clock.call_later(0, calls.append, "cancelled").cancel()
    assert calls == []
    await settle()
    assert calls == ["now", "overdue"]
    assert clock.now() == START


async def test_jump_moves_only_the_wall_clock() -> None:
    clock = FakeClock(START, monotonic_start=0.0)
    fired: list[float] = []
    clock.call_later(5, lambda: fired.append(clock.monotonic()))

    clock.jump(3600)
    assert clock.now() == START + timedelta(hours=1)
    assert clock.monotonic() == 0.0
    await settle()
    assert fired == []

    clock.jump(-7200)
    assert clock.now() == START - timedelta(hours=1)
    await clock.advance(5)
    assert fired == [5.0]
    assert clock.now() == START - timedelta(hours=1) + timedelta(seconds=5)


async def test_many_small_advances_keep_wall_and_monotonic_in_step() -> None:
    clock = FakeClock(START, monotonic_start=0.0)
    for _ in range(10):
        await clock.advance(0.0000004)  # each below a microsecond
    assert clock.now() == START + timedelta(microseconds=4)


@pytest.mark.parametrize("seconds", [-0.001, math.nan, math.inf])
async def test_advance_refuses_a_step_back_or_no_number(seconds: float) -> None:
    clock = FakeClock(START)
    with pytest.raises(ValueError):
        await clock.advance(seconds)
    assert clock.now() == START


def test_call_later_refuses_nan() -> None:
    with pytest.raises(ValueError):
        FakeClock(START).call_later(math.nan, print)


async def test_run_until_returns_the_fake_time_it_took() -> None:
    clock = FakeClock(START, monotonic_start=0.0)
    done = asyncio.Event()
    clock.call_later(0.35, done.set)

    took = await clock.run_until(done.is_set, within=5, step=0.1)

    assert took == pytest.approx(0.4)
    assert clock.monotonic() == pytest.approx(0.4)


async def test_run_until_with_a_predicate_already_true_takes_no_time() -> None:
    clock = FakeClock(START)
    assert await clock.run_until(lambda: True, within=1) == 0
    assert clock.now() == START


async def test_run_until_raises_when_the_predicate_never_holds() -> None:
    clock = FakeClock(START, monotonic_start=0.0)
    seen: list[float] = []

    def never() -> bool:
        seen.append(clock.monotonic())
        return False

    with pytest.raises(AssertionError, match="within 1"):
        await clock.run_until(never, within=1, step=0.3)

    assert clock.monotonic() == pytest.approx(1.0)  # it stops at the deadline, not past it
    assert seen[-1] == pytest.approx(1.0)  # and checks once more exactly there


@pytest.mark.parametrize("step", [0, -1])
async def test_run_until_refuses_a_step_that_would_never_move(step: float) -> None:
    clock = FakeClock(START)
    with pytest.raises(ValueError):
        await clock.run_until(lambda: False, within=1, step=step)


async def test_settle_runs_a_chain_of_ready_tasks() -> None:
    order: list[int] = []
    tasks: list[asyncio.Task[None]] = []

    def spawn(n: int) -> None:
        tasks.append(asyncio.ensure_future(link(n)))

    async def link(n: int) -> None:
        order.append(n)
        if n < 20:
            asyncio.get_running_loop().call_soon(spawn, n + 1)  # one loop round later

    spawn(0)
    await settle()
    assert order == list(range(21))
    assert all(task.done() for task in tasks)
