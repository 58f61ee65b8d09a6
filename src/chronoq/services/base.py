"""The one lifecycle every role shares: loops that tick, wait on a clock, and back off.

A role is a ``Service`` (``start`` returns once running; ``stop`` is graceful
and safe to call twice). Its periodic work is one or more ``Loop``s: a loop
calls its ``tick`` (which returns how long to wait before the next one),
waits that long on the role's ``Clock`` or until its ``Wakeup`` is set, and
repeats. A tick that raises does not kill the role: ``UnavailableError`` (a
backend is down) is expected and logged briefly, anything else is logged with
its traceback, and either way the loop backs off exponentially with jitter
(``Backoff``) and tries again; the first success resets the backoff.

Because every wait goes through the clock, a test drives a role with
``chronoq.testing.FakeClock`` and no real sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from chronoq.domain.clock import Clock
from chronoq.errors import UnavailableError

log = logging.getLogger("chronoq")


class Service(Protocol):
    """A role: ``start`` returns once running; ``stop`` is graceful and safe to call twice."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Wakeup:
    """An event a loop sleeps on with a deadline; ``set`` may be called from any callback."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._event = asyncio.Event()

    def set(self, _message: str = "") -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds`` or until set; then re-arm."""
        await self._clock.wait(self._event, seconds)
        self._event.clear()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter for failing ticks: after ``n`` failures a delay
    uniform in ``[c/2, c]`` with ``c = min(cap, first·2^(n-1))``."""

    first: float = 0.05
    cap: float = 2.0

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.first * 2.0 ** min(max(failures - 1, 0), 30))
        return (rng or _RNG).uniform(ceiling / 2, ceiling)


_RNG = random.Random()


class Loop:
    """A repeating ``tick`` with the shared wait/back-off rules (see the module docstring)."""

    def __init__(
        self,
        name: str,
        tick: Callable[[], Awaitable[float]],
        clock: Clock,
        *,
        wakeup: Wakeup | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self._tick = tick
        self._clock = clock
        self.wakeup = wakeup or Wakeup(clock)
        self._backoff = backoff or Backoff()
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def failures(self) -> int:
        """Consecutive failed ticks (0 after a success)."""
        return self._failures

    def start(self, *, after: float = 0.0) -> None:
        """Begin ticking, the first tick ``after`` seconds from now (or at a wakeup)."""
        if self._task is None:
            self._task = spawn(self._run(after), self.name)

    async def stop(self) -> None:
        """Cancel the loop (a tick in progress is cancelled too); safe to call twice."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self, after: float) -> None:
        if after > 0:
            await self.wakeup.wait(after)
        while True:
            delay = await self._tick_once()
            await self.wakeup.wait(delay)

    async def _tick_once(self) -> float:
        try:
            delay = await self._tick()
        except UnavailableError as exc:
            self._failures += 1
            log.warning("%s: %s; retrying", self.name, exc)
        except Exception:
            self._failures += 1
            log.exception("%s failed; retrying", self.name)
        else:
            self._failures = 0
            return delay
        return self._backoff.delay(self._failures)


def spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A background task whose crash is logged loudly instead of vanishing."""
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_report)
    return task


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s crashed", task.get_name(), exc_info=task.exception())


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
