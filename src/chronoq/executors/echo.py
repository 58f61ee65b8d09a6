"""The default executor: echoes the payload back, as the seed's worker did."""

from __future__ import annotations

import asyncio

from chronoq.executors.base import ExecutionRequest, ExecutionResult, timeout_message

__all__ = ["EchoExecutor"]


class EchoExecutor:
    """Returns ``Success: <payload>`` after ``delay`` seconds (a simulated run).

    This is the benchmark's hot path: with ``delay == 0`` it never touches the event
    loop and allocates only the output string and the result. If ``delay`` exceeds
    the request's timeout it waits ``timeout_seconds`` and reports a timeout.
    """

    prefix = ""

    def __init__(self, *, delay: float = 0.0) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay!r}")
        self.delay = delay

    def execute_inline(self, request: ExecutionRequest) -> ExecutionResult | None:
        """The result right now when no waiting is involved (``delay == 0``), else None.

        Lets the worker run a burst of no-op jobs inside one callback, without a task each.
        """
        if self.delay > 0:
            return None
        return ExecutionResult(succeeded=True, output="Success: " + request.payload)

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        """Echo ``request.payload``; see the class docstring for timing."""
        delay = self.delay
        if delay > 0:
            timeout = request.timeout_seconds
            if delay > timeout:
                await asyncio.sleep(timeout)
                return ExecutionResult(
                    succeeded=False, timed_out=True, error=timeout_message(timeout)
                )
            await asyncio.sleep(delay)
        return ExecutionResult(succeeded=True, output="Success: " + request.payload)
