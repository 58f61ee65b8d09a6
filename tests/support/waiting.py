"""Deadline-bounded polls: the only way the suites and the benchmark wait for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Call ``predicate`` until it returns something truthy or ``timeout`` passes.

    Returns the last value either way, so the caller asserts on it and the
    failure message shows what was last seen. Always calls at least once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def stays_false(predicate: Callable[[], Any], duration: float, interval: float = 0.05) -> bool:
    """True if ``predicate`` stayed falsy for the whole ``duration`` (checks absence)."""
    return not wait_for(predicate, duration, interval)


async def poll(check: Callable[[], Awaitable[T]], within: float, interval: float = 0.05) -> T:
    """``wait_for`` for coroutines: await ``check()`` until it is truthy or ``within`` seconds
    passed; the last value either way."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
