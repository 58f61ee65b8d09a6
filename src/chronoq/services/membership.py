"""Membership: a role's heartbeat in the coordination store (distributed mode).

Pickers must be live members to be given shards; the leader treats a member
silent for ``ttl`` as dead. ``stop`` removes the row so a graceful exit
rebalances at once instead of after a ttl.
"""

from __future__ import annotations

import asyncio

from chronoq.errors import ConfigError
from chronoq.ports.coordination import Coordination, Member
from chronoq.services.base import cancel_and_wait, log, spawn


class Heartbeat:
    name = "heartbeat"

    def __init__(self, coordination: Coordination, member: Member, *, ttl: float) -> None:
        self._coordination = coordination
        self.member = member
        self._ttl = ttl
        self._interval = ttl / 3
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._refuse_a_live_twin()
        await self._coordination.heartbeat(self.member)
        self._task = spawn(self._loop(), f"heartbeat-{self.member.role}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        try:
            await self._coordination.leave(self.member.member_id)
        except Exception:
            log.warning("membership: could not leave cleanly; the ttl will expire it")

    async def _refuse_a_live_twin(self) -> None:
        """Two live processes under one id would share one lease and one shard assignment,
        and fencing could not tell them apart. A row left by a dead predecessor (a restart
        under the same id) stops being refreshed and ages out within the ttl: wait for that;
        a row that keeps being refreshed belongs to a live twin: refuse to start."""
        me = (self.member.host, self.member.pid)
        deadline = asyncio.get_running_loop().time() + self._ttl * 1.5
        while True:
            twins = [
                m
                for m in await self._coordination.members(self.member.role, ttl=self._ttl)
                if m.member_id == self.member.member_id and (m.host, m.pid) != me
            ]
            if not twins:
                return
            if asyncio.get_running_loop().time() >= deadline:
                twin = twins[0]
                raise ConfigError(
                    f"node id {self.member.member_id!r} is in use by a live {twin.role}"
                    f" ({twin.host} pid {twin.pid}); give each process its own --node-id"
                )
            await asyncio.sleep(self._interval)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._coordination.heartbeat(self.member)
            except Exception:
                log.exception("membership: heartbeat of %s failed", self.member.member_id)
