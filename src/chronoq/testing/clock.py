"""``FakeClock``: wall and monotonic time that move only when a test says so.

Roles take a ``Clock`` for every wait (``sleep``, ``wait``, ``call_later``), so
a test that hands them a ``FakeClock`` decides when time passes::

    clock = FakeClock()
    picker = ...(clock=clock)
    await clock.advance(5)      # fires every timer due in those 5 s, in order

``advance`` moves time to each pending deadline in turn, runs what that wakes,
and lets the event loop settle (every ready callback runs) before the next
one, so the same test always sees the same interleaving. Work done on other
threads (the SQLite store) is not part of "settled": tests on the fake clock
use the in-memory adapters. ``jump`` moves only the wall clock, as an NTP step
or an operator would (clock-jump tests); monotonic time never goes back.

A wait of no time (``sleep(0)``, ``call_later(0, ...)``, negative delays) needs
no ``advance``: it completes on the next loop iteration, as on the real clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chronoq.domain.clock import check_aware

DEFAULT_START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)


class FakeTimer:
    """A pending ``call_later``; ``cancel`` stops it from running."""

    __slots__ = ("args", "callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[..., Any], args: tuple[Any, ...]):
        self.deadline = deadline
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A ``Clock`` for tests: nothing moves until ``advance`` (or ``jump``)."""

    def __init__(self, start: datetime = DEFAULT_START, *, monotonic_start: float = 1000.0) -> None:
        self._start = check_aware(start, "start")
        self._mono_start = monotonic_start
        self._mono = monotonic_start
        self._jumped = timedelta(0)
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._seq = itertools.count()

    # -- the Clock port ------------------------------------------------------------------------

    def now(self) -> datetime:
        # Derived from monotonic time (plus jumps), so many small advances never drift
        # apart from it by rounding to microseconds.
        return self._start + timedelta(seconds=self._mono - self._mono_start) + self._jumped

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if _delay(seconds) == 0:
            await asyncio.sleep(0)  # no time to wait: yield once, as the real clock does
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(seconds, _resolve, future)
        try:
            await future
        finally:
            timer.cancel()

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        if seconds <= 0:
            return False
        waiter = asyncio.ensure_future(event.wait())
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, sleeper):
                task.cancel()
            await asyncio.gather(waiter, sleeper, return_exceptions=True)
        return event.is_set()

    def call_later(self, seconds: float, callback: Callable[..., Any], *args: Any) -> FakeTimer:
        """Schedule ``callback(*args)``; with no delay it runs on the next loop iteration
        (as ``loop.call_later(0, ...)`` does), not at the next ``advance``."""
        delay = _delay(seconds)
        timer = FakeTimer(self._mono + delay, callback, args)
        if delay == 0:
            asyncio.get_running_loop().call_soon(_fire, timer)
        else:
            heapq.heappush(self._timers, (timer.deadline, next(self._seq), timer))
        return timer

    # -- driving time --------------------------------------------------------------------------

    async def advance(self, seconds: float) -> None:
        """Move both clocks ``seconds`` forward, firing due timers in deadline order."""
        if not 0 <= seconds < math.inf:
            raise ValueError(f"advance by finite seconds >= 0, got {seconds!r} (jump() steps back)")
        target = self._mono + seconds
        await settle()
        while True:
            timer = self._pop_due(target)
            if timer is None:
                break
            self._move_to(timer.deadline)
            timer.callback(*timer.args)
            await settle()
        self._move_to(target)
        await settle()

    async def run_until(
        self, predicate: Callable[[], bool], *, within: float, step: float = 0.01
    ) -> float:
        """Advance in ``step``s until ``predicate()`` holds; return the fake seconds it took.

        Raises ``AssertionError`` if it does not hold within ``within`` fake seconds.
        """
        if not step > 0:
            raise ValueError(f"step must be > 0 seconds, got {step!r}")
        started = self._mono
        deadline = started + within
        await settle()
        while not predicate():
            remaining = deadline - self._mono
            if not remaining > 0:
                raise AssertionError(f"condition not met within {within} fake seconds")
            await self.advance(min(step, remaining))  # the last check is at the deadline itself
        return self._mono - started

    def jump(self, seconds: float) -> None:
        """Step the wall clock only (forward or back); timers and monotonic time stay."""
        self._jumped += timedelta(seconds=seconds)

    @property
    def pending(self) -> int:
        """Timers scheduled and not cancelled (to assert that a role is idle)."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def _pop_due(self, target: float) -> FakeTimer | None:
        while self._timers:
            deadline, _, timer = self._timers[0]
            if deadline > target:
                return None
            heapq.heappop(self._timers)
            if not timer.cancelled:
                return timer
        return None

    def _move_to(self, mono: float) -> None:
        self._mono = max(self._mono, mono)


def _delay(seconds: float) -> float:
    """A timer's delay: negative means none; NaN would break the heap's order."""
    if math.isnan(seconds):
        raise ValueError("a delay cannot be NaN")
    return max(seconds, 0.0)


def _fire(timer: FakeTimer) -> None:
    if not timer.cancelled:
        timer.callback(*timer.args)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def settle(max_rounds: int = 10_000) -> None:
    """Yield to the event loop until nothing is ready to run (bounded).

    Uses the default loop's ready queue to know when it is quiet; on a loop
    without one (uvloop) it yields a fixed 50 times.
    """
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    if ready is None:
        for _ in range(50):
            await asyncio.sleep(0)
        return
    quiet = 0
    for _ in range(max_rounds):
        await asyncio.sleep(0)
        quiet = quiet + 1 if not ready else 0
        if quiet >= 2:  # twice quiet: a callback may have scheduled a task one round late
            return
