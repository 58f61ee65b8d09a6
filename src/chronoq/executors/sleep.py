"""``sleep:<Go duration>``: sleeps without blocking the event loop."""

from __future__ import annotations

import asyncio

from chronoq.domain.durations import parse_go_duration
from chronoq.errors import ValidationError
from chronoq.executors.base import ExecutionRequest, ExecutionResult, timeout_message

__all__ = ["SleepExecutor"]


class SleepExecutor:
    """Sleeps for the payload's duration (``sleep:2s``, ``sleep:1h30m``, ``sleep:250ms``).

    * valid duration within the timeout: ``succeeded``, output ``Slept <duration>``;
    * invalid duration: a failed result whose ``error`` names the problem, at once;
    * duration over the timeout: sleeps ``timeout_seconds``, then ``timed_out``.
    """

    prefix = "sleep:"

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        """Sleep as the payload says; see the class docstring."""
        text = request.payload.removeprefix(self.prefix).strip()
        try:
            seconds = parse_go_duration(text).total_seconds()
        except ValidationError as exc:
            return ExecutionResult(succeeded=False, error=exc.message)
        timeout = request.timeout_seconds
        if seconds > timeout:
            await asyncio.sleep(timeout)
            return ExecutionResult(succeeded=False, timed_out=True, error=timeout_message(timeout))
        await asyncio.sleep(seconds)
        return ExecutionResult(succeeded=True, output=f"Slept {text}")
