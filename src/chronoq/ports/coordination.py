"""The Coordination port: leadership, membership and shard assignment (DESIGN §2, §5.5).

State model (every node runs the same loop; the store's clock decides expiry):

* **Follower.** A node that does not hold the leader lease. Each tick it calls
  ``try_lead``; it becomes leader when the lease is free or expired.
* **Leader.** Holds ``leader`` with an ``epoch`` (a fencing token that grows by
  one at every change of holder) until ``expires_at``. It renews by calling
  ``try_lead`` again well inside the lease (every ttl/3). The trust window: a
  leader acts only while ``now < expires_at`` of its last successful renewal,
  minus a safety margin; if a renewal fails or is late it demotes itself at
  once, before the lease can pass to another node.
* **Leader work** is fenced: ``assign_shards`` applies only if the caller still
  holds the lease at the epoch it names; a deposed leader's write changes nothing.
* **Members** (pickers, workers, api nodes, writers) heartbeat every ttl/3; a
  member whose heartbeat is older than the ttl is dead. The leader spreads the
  shards over live pickers and writes the assignment with ``assign_shards``,
  which returns a new **assignment epoch** (it only grows, across leaders and
  restarts). The leader then records the same owners and epoch in the store
  with ``Dispatch.fence_shards``; pickers read their own assignment here and
  claim with their (owner, epoch), which the store checks against its own
  record. So fencing needs no shared transaction and no adapter reads another
  port's tables: any Coordination works with any store.
* **Failure detection.** The leader passes the live workers to
  ``Dispatch.reap_lost``: the runs of a worker silent for a member ttl go back
  to the queue within one reaper pass (seconds), long before their lease would
  expire. The lease stays as the safety net for a live but stuck worker.

Failures: leader dies → its lease expires → another node's ``try_lead``
succeeds with epoch + 1, reassigns (a new assignment epoch) and re-fences.
Picker dies → heartbeat ages out → the leader moves its shards. Worker dies →
heartbeat ages out → its runs are reaped. Partition → the cut-off node cannot
renew anything; its fenced claims find nothing; it demotes itself. A leader
that lost its lease but does not know yet can still call ``fence_shards``
with its last epoch; the store refuses it, because the new leader's epoch is
greater. The coordination itself being unreachable: the leader demotes
itself, and nobody reaps by membership until members have been heard from
again for a full ttl.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class Leadership:
    holder: str
    epoch: int
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    member_id: str
    role: str
    host: str = ""
    pid: int = 0
    heartbeat_at: datetime | None = None
    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardAssignment:
    """The shards one picker owns, under one assignment epoch."""

    owner: str
    epoch: int
    shards: tuple[int, ...]


LEASE_OWNER = "lease_owner"
"""``Member.info`` key: the lease owner id a worker member claims runs under."""


def lease_owners(workers: Sequence[Member]) -> frozenset[str]:
    """The lease owners of live worker members (``Dispatch.reap_lost``'s ``live_workers``).

    A worker claims under its member id plus an incarnation token (``info[LEASE_OWNER]``),
    so a process restarted under the same ``--node-id`` is a NEW owner: its predecessor's
    runs are not live and are reaped at once, and a predecessor that was only frozen cannot
    start or finish runs its successor claimed. A member without the key owns leases under
    its member id.
    """
    return frozenset(m.info.get(LEASE_OWNER, m.member_id) for m in workers)


class Coordination(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def try_lead(self, candidate: str, ttl: float) -> Leadership | None:
        """Acquire or renew the leader lease for ``ttl`` seconds.

        Returns the lease if ``candidate`` holds it after the call, else None.
        A new holder gets ``epoch + 1``; a renewal keeps the epoch.
        """
        ...

    async def resign(self, candidate: str) -> None:
        """Give the lease up at once if ``candidate`` holds it (graceful stop)."""
        ...

    async def leader(self) -> Leadership | None:
        """The current, unexpired lease, if any."""
        ...

    async def heartbeat(self, member: Member) -> None:
        """Insert or refresh a member's row (its ``heartbeat_at`` becomes the store's now)."""
        ...

    async def leave(self, member_id: str) -> None:
        """Remove a member at a graceful stop."""
        ...

    async def members(self, role: str | None = None, *, ttl: float) -> list[Member]:
        """Members heard from within ``ttl`` seconds, optionally of one role."""
        ...

    async def assign_shards(
        self, leader: str, leader_epoch: int, owners: Mapping[int, str]
    ) -> int | None:
        """Replace the whole assignment (shard -> picker) under a new assignment epoch.

        Applies only if ``leader`` still holds an unexpired lease at ``leader_epoch``;
        returns the new assignment epoch (greater than every epoch this coordination
        ever returned), or None if fenced out.
        """
        ...

    async def assignment_of(self, owner: str) -> ShardAssignment:
        """The shards ``owner`` holds now (empty tuple and epoch 0 if none)."""
        ...

    async def assignments(self) -> dict[int, tuple[str, int]]:
        """Every shard's (owner, epoch), for status displays and rebalancing."""
        ...


def spread_shards(shard_count: int, pickers: Sequence[str]) -> dict[int, str]:
    """Give each shard to one live picker by rendezvous hashing.

    Pure and deterministic: every leader computes the same answer for the same
    live set, when a picker joins or dies few shards move, and no picker takes more than
    its ceil(N/k) share.
    """
    live = sorted(set(pickers))
    if not live:
        return {}
    cap = -(-shard_count // len(live))  # ceil: no picker takes more than its share
    load = dict.fromkeys(live, 0)
    owners: dict[int, str] = {}
    for shard in range(shard_count):
        ranked = sorted(live, key=lambda picker: _weight(shard, picker), reverse=True)
        owner = next(p for p in ranked if load[p] < cap)
        owners[shard] = owner
        load[owner] += 1
    return owners


def _weight(shard: int, picker: str) -> int:
    digest = hashlib.blake2b(f"{shard}:{picker}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
