"""The lifecycle every role shares, and a cancellable wake-up signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

log = logging.getLogger("chronoq")


class Service(Protocol):
    """A role: ``start`` returns once running; ``stop`` is graceful and safe to call twice."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Wakeup:
    """An event a loop sleeps on with a deadline; ``set`` may be called from any callback."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self, _message: str = "") -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds`` or until set; then re-arm."""
        if seconds > 0 and not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()


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
