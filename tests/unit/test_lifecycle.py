"""The one role lifecycle (services/base.py): Loop ticks, waits on the clock, backs off."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from chronoq.domain.clock import SystemClock
from chronoq.errors import UnavailableError
from chronoq.services.base import Backoff, Loop
from chronoq.testing import FakeClock


async def test_system_clock_wait_lets_a_cancel_through_when_the_event_fires_too() -> None:
    """Python 3.11's wait_for swallows a cancel that lands with the event: a role stopped
    right after its wakeup was set would never stop. The clock's wait must not."""
    clock = SystemClock()
    for _ in range(50):
        event = asyncio.Event()
        task = asyncio.create_task(clock.wait(event, 3600))
        await asyncio.sleep(0)  # the task is waiting
        event.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def test_a_loop_whose_wakeup_was_set_just_before_stop_stops() -> None:
    ticks = 0

    async def tick() -> float:
        nonlocal ticks
        ticks += 1
        return 3600.0

    loop = Loop("t", tick, SystemClock())
    loop.start()
    await asyncio.sleep(0.01)
    loop.wakeup.set()
    await asyncio.wait_for(loop.stop(), 5)
    assert ticks >= 1


async def test_a_failing_tick_backs_off_and_recovers() -> None:
    clock = FakeClock()
    outcomes: list[BaseException | float] = [
        UnavailableError("down"), UnavailableError("down"), RuntimeError("bug"), 10.0, 10.0,
    ]  # fmt: skip
    at: list[float] = []

    async def tick() -> float:
        at.append(clock.monotonic())
        outcome = outcomes.pop(0) if outcomes else 10.0
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    loop = Loop("t", tick, clock, backoff=Backoff(first=1.0, cap=4.0))
    loop.start()
    await clock.advance(0)
    assert len(at) == 1 and loop.failures == 1
    await clock.run_until(lambda: len(at) >= 4, within=20)
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert 0.5 <= gaps[0] <= 1.0  # first failure: [first/2, first]
    assert 1.0 <= gaps[1] <= 2.0  # doubling
    assert 2.0 <= gaps[2] <= 4.0
    assert loop.failures == 0  # the fourth tick succeeded
    await clock.advance(9.9)
    assert len(at) == 4  # now it waits what the tick asked for
    await clock.advance(0.2)
    assert len(at) == 5
    await loop.stop()
    await loop.stop()  # safe twice
