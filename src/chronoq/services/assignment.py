"""Following this picker's shard assignment (distributed mode).

The picker claims with the (owner, epoch) it read here; the store compares them
with its own fence record (``Dispatch.fence_shards``) inside every claim. So a
stale copy is harmless: claims under an old epoch find nothing, and the next
read picks up the new epoch. The assignment is re-read at most every
``refresh`` seconds of the clock's monotonic time, or at the next ``current``
after ``invalidate`` (an ``assign`` hint, or a claim that found nothing).
"""

from __future__ import annotations

from chronoq.domain.clock import Clock
from chronoq.ports.coordination import Coordination, ShardAssignment
from chronoq.services.base import log


class AssignmentFollower:
    def __init__(
        self, coordination: Coordination, owner: str, clock: Clock, *, refresh: float = 1.0
    ) -> None:
        self._coordination = coordination
        self._owner = owner
        self._clock = clock
        self._refresh = refresh
        self._current = ShardAssignment(owner=owner, epoch=0, shards=())
        self._read_at: float | None = None
        self._failing = False

    @property
    def owner(self) -> str:
        return self._owner

    def invalidate(self) -> None:
        """Re-read the assignment at the next ``current``."""
        self._read_at = None

    async def current(self) -> ShardAssignment:
        """This picker's assignment, at most ``refresh`` seconds old.

        If the coordination cannot be read, the last copy is kept (the store's fence
        keeps it harmless, and it lets the picker go on claiming while only the
        coordination is down) and the read is retried ``refresh`` seconds later.
        """
        if self.seconds_to_refresh() > 0:
            return self._current
        self._read_at = self._clock.monotonic()
        try:
            fresh = await self._coordination.assignment_of(self._owner)
        except Exception as exc:
            if not self._failing:  # once per outage, not once per second
                log.warning("picker %s: the shard assignment is unreadable (%s); keeping"
                            " epoch %d", self._owner, exc, self._current.epoch)  # fmt: skip
            self._failing = True
            return self._current
        self._failing = False
        if fresh.epoch != self._current.epoch:
            log.info(
                "picker %s: %d shards at assignment epoch %d",
                self._owner, len(fresh.shards), fresh.epoch,
            )  # fmt: skip
        self._current = fresh
        return fresh

    def seconds_to_refresh(self) -> float:
        """Seconds until ``current`` reads the coordination again (0: at the next call)."""
        if self._read_at is None:
            return 0.0
        return max(self._refresh - (self._clock.monotonic() - self._read_at), 0.0)
