"""``MemoryCoordination``: the Coordination port for roles hosted in ONE process.

The same state model and semantics as ``PostgresCoordination`` (see the port's
docstring), kept in dictionaries; the injected clock plays the store's clock.
Every method runs without awaiting in between, so each is atomic on the
event loop:

* ``try_lead`` takes the lease if the candidate holds it or it has lapsed
  (``expires_at <= now``); a new term (another holder, the same holder after a
  lapse, or after ``resign``) gets ``epoch + 1``; renewing a live lease keeps the
  epoch and never moves ``expires_at`` back.
* ``assign_shards`` applies only for the live leader at the epoch it names,
  bumps the assignment epoch (which only grows) and rewrites every shard with
  it; it publishes the epoch on the ``assign`` channel of the optional notifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from chronoq.domain.clock import Clock, SystemClock
from chronoq.errors import ValidationError
from chronoq.ports.coordination import Leadership, Member, ShardAssignment
from chronoq.ports.notify import Notifier

ASSIGN_CHANNEL = "assign"


class MemoryCoordination:
    """In-process leadership, membership and shard assignment."""

    def __init__(self, clock: Clock | None = None, notifier: Notifier | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._notifier = notifier
        self._holder: str | None = None
        self._epoch = 0
        self._expires_at: datetime | None = None
        self._members: dict[str, Member] = {}
        self._assignment_epoch = 0
        self._assignments: dict[int, tuple[str, int]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- leadership --------------------------------------------------------------------------

    async def try_lead(self, candidate: str, ttl: float) -> Leadership | None:
        _check_name(candidate, "candidate")
        _check_ttl(ttl)
        now = self._clock.now()
        current = self._expires_at
        live = self._holder is not None and current is not None and current > now
        if live and self._holder != candidate:
            return None
        expires_at = now + timedelta(seconds=ttl)
        if live and current is not None:
            expires_at = max(expires_at, current)  # a renewal never shortens the lease
        else:
            self._epoch += 1  # a new term
        self._holder = candidate
        self._expires_at = expires_at
        return Leadership(holder=candidate, epoch=self._epoch, expires_at=self._expires_at)

    async def resign(self, candidate: str) -> None:
        if self._holder is None or self._holder != candidate:
            return
        now = self._clock.now()
        self._holder = None
        if self._expires_at is None or self._expires_at > now:
            self._expires_at = now

    async def leader(self) -> Leadership | None:
        if self._holder is None or self._expires_at is None:
            return None
        if self._expires_at <= self._clock.now():
            return None
        return Leadership(holder=self._holder, epoch=self._epoch, expires_at=self._expires_at)

    # -- membership --------------------------------------------------------------------------

    async def heartbeat(self, member: Member) -> None:
        _check_name(member.member_id, "member_id")
        self._members[member.member_id] = replace(
            member, heartbeat_at=self._clock.now(), info=dict(member.info)
        )

    async def leave(self, member_id: str) -> None:
        self._members.pop(member_id, None)

    async def members(self, role: str | None = None, *, ttl: float) -> list[Member]:
        _check_ttl(ttl)
        since = self._clock.now() - timedelta(seconds=ttl)
        return [
            m
            for _, m in sorted(self._members.items())
            if m.heartbeat_at is not None
            and m.heartbeat_at > since
            and (role is None or m.role == role)
        ]

    # -- shard assignment --------------------------------------------------------------------

    async def assign_shards(
        self, leader: str, leader_epoch: int, owners: Mapping[int, str]
    ) -> int | None:
        for shard, owner in owners.items():
            if not isinstance(shard, int) or shard < 0:
                raise ValidationError(f"shard ids are ints >= 0, got {shard!r}", field="owners")
            _check_name(owner, "owners")
        lease = await self.leader()
        if lease is None or lease.holder != leader or lease.epoch != leader_epoch:
            return None  # fenced out
        self._assignment_epoch += 1
        epoch = self._assignment_epoch
        self._assignments = {shard: (owners[shard], epoch) for shard in sorted(owners)}
        if self._notifier is not None:
            self._notifier.publish(ASSIGN_CHANNEL, str(epoch))
        return epoch

    async def assignment_of(self, owner: str) -> ShardAssignment:
        shards = tuple(s for s, (o, _) in self._assignments.items() if o == owner)
        epoch = self._assignment_epoch if shards else 0
        return ShardAssignment(owner=owner, epoch=epoch, shards=shards)

    async def assignments(self) -> dict[int, tuple[str, int]]:
        return dict(self._assignments)


def _check_name(value: object, field: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{field} must be a non-empty string, got {value!r}", field=field)


def _check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValidationError(f"ttl must be > 0 seconds, got {ttl!r}", field="ttl")
