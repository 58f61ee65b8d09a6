"""Membership: a role's heartbeat in the coordination store (distributed mode).

Pickers must be live members to be given shards, and workers to keep their runs:
the leader treats a member silent for ``ttl`` as dead (it moves a picker's
shards and reaps a worker's runs). The heartbeat is a ``Loop`` beating every
``ttl / 3``; a failed beat is retried sooner (back-off capped at that
interval), so once the coordination is back every live member is heard from
within one interval — the leader counts on that before it trusts membership
again. ``stop`` removes the row, so a graceful exit rebalances at once instead
of after a ttl.
"""

from __future__ import annotations

from chronoq.domain.clock import Clock
from chronoq.errors import ConfigError
from chronoq.ports.coordination import Coordination, Member
from chronoq.services.base import Backoff, Loop, log


class Heartbeat:
    name = "heartbeat"

    def __init__(
        self, coordination: Coordination, member: Member, clock: Clock, *, ttl: float
    ) -> None:
        self._coordination = coordination
        self.member = member
        self._clock = clock
        self._ttl = ttl
        self._interval = ttl / 3
        self._loop = Loop(
            f"heartbeat-{member.role}", self._beat, clock,
            backoff=Backoff(first=min(0.05, self._interval), cap=self._interval),
        )  # fmt: skip
        self._running = False

    async def start(self) -> None:
        """Refuse a live twin, beat once (a member from the moment ``start`` returns), then
        every interval."""
        if self._running:
            return
        await self._refuse_a_live_twin()
        await self._coordination.heartbeat(self.member)
        self._running = True
        self._loop.start(after=self._interval)

    async def stop(self) -> None:
        await self._loop.stop()
        if not self._running:
            return
        self._running = False
        try:
            await self._coordination.leave(self.member.member_id)
        except Exception:
            log.warning("membership: could not leave cleanly; the ttl will expire it")

    async def _beat(self) -> float:
        await self._coordination.heartbeat(self.member)
        return self._interval

    async def _refuse_a_live_twin(self) -> None:
        """Two live processes under one id would share one lease and one shard assignment,
        and fencing could not tell them apart. A row left by a dead predecessor (a restart
        under the same id) stops being refreshed and ages out within the ttl: wait for that;
        a row that keeps being refreshed belongs to a live twin: refuse to start."""
        me = (self.member.host, self.member.pid)
        deadline = self._clock.monotonic() + self._ttl * 1.5
        while True:
            twins = [
                m
                for m in await self._coordination.members(self.member.role, ttl=self._ttl)
                if m.member_id == self.member.member_id and (m.host, m.pid) != me
            ]
            if not twins:
                return
            if self._clock.monotonic() >= deadline:
                twin = twins[0]
                raise ConfigError(
                    f"node id {self.member.member_id!r} is in use by a live {twin.role}"
                    f" ({twin.host} pid {twin.pid}); give each process its own --node-id"
                )
            await self._clock.sleep(self._interval)
