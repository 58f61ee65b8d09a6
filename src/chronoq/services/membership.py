"""Membership: a role's heartbeat in the coordination store (distributed mode).

Pickers must be live members to be given shards; the leader treats a member
silent for ``ttl`` as dead. ``stop`` removes the row so a graceful exit
rebalances at once instead of after a ttl.
"""

from __future__ import annotations

import asyncio

from chronoq.ports.coordination import Coordination, Member
from chronoq.services.base import cancel_and_wait, log, spawn


class Heartbeat:
    name = "heartbeat"

    def __init__(self, coordination: Coordination, member: Member, *, ttl: float) -> None:
        self._coordination = coordination
        self.member = member
        self._interval = ttl / 3
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._coordination.heartbeat(self.member)
        self._task = spawn(self._loop(), f"heartbeat-{self.member.role}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        try:
            await self._coordination.leave(self.member.member_id)
        except Exception:
            log.warning("membership: could not leave cleanly; the ttl will expire it")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._coordination.heartbeat(self.member)
            except Exception:
                log.exception("membership: heartbeat of %s failed", self.member.member_id)
