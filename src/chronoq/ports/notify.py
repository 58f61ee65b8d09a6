"""The Notifier port: wake-ups between roles, so nobody polls blindly (DESIGN §6).

Notifications are hints, never the source of truth: every decision they
announce (a new fire, a runnable run, a cancel, a new assignment) is also
found by polling the store or the coordination within a bounded time, so a
lost hint only delays it. A cancel, for example, reaches the worker at its
next lease renewal (``Dispatch.extend_leases`` reports it); the CANCEL hint
only makes that immediate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

FIRES = "fires"
"""A job's next fire changed (new submission, resume): pickers re-check their sleep."""
RUNS = "runs"
"""Runs became claimable: workers re-check."""
SUBMISSIONS = "submissions"
"""Jobs were appended to the submission log: writer processes move them."""
ASSIGN = "assign"
"""The shard assignment changed: pickers re-read theirs."""
CANCEL = "cancel"
"""A job was cancelled; the message is the run id to kill (also found at lease renewal)."""


class Notifier(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def publish(self, channel: str, message: str = "") -> None:
        """Send a hint to every subscriber of ``channel``; never blocks, may be lost."""
        ...

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(message)`` on the event loop for each hint on ``channel``."""
        ...
