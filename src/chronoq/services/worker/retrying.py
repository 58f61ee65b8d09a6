"""Retrying a store call while the store is unreachable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from chronoq.domain.clock import Clock
from chronoq.errors import UnavailableError
from chronoq.services.base import Backoff, log

T = TypeVar("T")


async def until_available(
    call: Callable[[], Awaitable[T]], clock: Clock, backoff: Backoff, what: str
) -> T:
    """``await call()`` until it does not raise ``UnavailableError``; back off between tries.

    Retries forever (only ``UnavailableError`` means "nothing changed, try again"); any
    other exception propagates at once. Cancel the caller to give up.
    """
    failures = 0
    while True:
        try:
            return await call()
        except UnavailableError as exc:
            failures += 1
            if failures == 1 or failures % 10 == 0:  # the store is down: say so, not 10x/s
                log.warning("worker: %s: %s; retrying (%d failures)", what, exc, failures)
            await clock.sleep(backoff.delay(failures))
