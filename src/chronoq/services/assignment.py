"""Following this picker's shard assignment (distributed mode).

The assignment is re-read at most every ``refresh`` seconds, or at once after
an ``assign`` hint. A stale copy is harmless: the store checks (owner, epoch)
inside every claim, so claims under an old epoch simply find nothing, and the
next refresh picks up the new epoch.
"""

from __future__ import annotations

import time

from chronoq.ports.coordination import Coordination, ShardAssignment
from chronoq.ports.notify import ASSIGN, Notifier
from chronoq.services.base import Wakeup, log


class AssignmentFollower:
    def __init__(
        self,
        coordination: Coordination,
        notifier: Notifier,
        owner: str,
        wakeup: Wakeup,
        *,
        refresh: float = 1.0,
    ) -> None:
        self._coordination = coordination
        self._owner = owner
        self._refresh = refresh
        self._wakeup = wakeup
        self._current = ShardAssignment(owner=owner, epoch=0, shards=())
        self._read_at = -1e9
        notifier.subscribe(ASSIGN, self._on_assign)

    @property
    def owner(self) -> str:
        return self._owner

    def _on_assign(self, _message: str) -> None:
        self.invalidate()
        self._wakeup.set()

    def invalidate(self) -> None:
        """Re-read the assignment at the next ``current``."""
        self._read_at = -1e9

    async def current(self) -> ShardAssignment:
        if time.monotonic() - self._read_at >= self._refresh:
            try:
                fresh = await self._coordination.assignment_of(self._owner)
            except Exception:
                log.exception("picker: reading the shard assignment failed")
                return self._current
            if fresh.epoch != self._current.epoch:
                log.info(
                    "picker %s: %d shards at assignment epoch %d",
                    self._owner, len(fresh.shards), fresh.epoch,
                )  # fmt: skip
            self._current = fresh
            self._read_at = time.monotonic()
        return self._current

    def seconds_to_refresh(self) -> float:
        return max(self._refresh - (time.monotonic() - self._read_at), 0.0)
