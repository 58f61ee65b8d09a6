"""``PostgresCoordination``: leader lease, membership and shard assignment in PostgreSQL.

The state model is the port's (``chronoq.ports.coordination``); this adapter
keeps it with three tables (``sql/002_coordination.sql``) and the SERVER's
clock for every expiry decision, so nodes with skewed clocks still agree:

* **Lease.** ``try_lead`` is one atomic upsert on ``leader_lease``: it takes
  the row if the caller already holds it or the lease has lapsed
  (``expires_at <= now()``). A new term (another holder, or the same holder
  after its lease had lapsed, or after ``resign``) gets ``epoch + 1``; renewing
  a live lease keeps the epoch. Concurrent calls serialize on the row lock, so
  two callers can never both win, and an epoch names exactly one holder. The
  lease runs ``ttl`` from the statement's start (``now()``), so waiting on a
  lock only shortens a new grant; a renewal never moves ``expires_at`` back.
  The row is never deleted: ``resign`` clears the holder and expires the
  lease, so epochs are never reused.
* **Fenced leader work.** ``assign_shards`` runs in one transaction that
  first locks the lease row ``FOR UPDATE`` where ``holder = leader AND
  epoch = leader_epoch AND expires_at > clock_timestamp()`` (no row: fenced
  out, nothing changes, returns None). Holding that lock, no other candidate
  can take the lease until the assignment commits. It then bumps the
  ``assignment_epoch`` counter (a row never deleted, so assignment epochs only
  grow, across leaders and restarts), rewrites every ``shard_assignments`` row
  with the new epoch and sends ``NOTIFY chronoq_assign`` with the epoch:
  pickers subscribed to the ``assign`` channel of ``PostgresNotifier`` re-read
  their assignment.
* **Claims are fenced by the store, not here**: the leader copies each new
  assignment into the store with ``Dispatch.fence_shards(epoch, owners)``, and
  the store checks a picker's (owner, epoch) against its own record. No store
  reads these tables, so this coordination fences any store.
* **Members** upsert their row with ``heartbeat_at = now()``; ``members``
  lists rows heard from within the ttl.

Failures: a connection or server failure raises ``UnavailableError``
(``errors.translated``) and changes nothing, since every operation is one
statement or one transaction; the caller treats it as a failed renewal
(a leader demotes itself). Deadlocks and serialization failures are retried.

Lifecycle: nothing connects before ``start()``, which opens a small pool and
applies the migrations (the same runner as ``PostgresStore``); ``close()`` is
safe to call twice.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.pool import PgPool
from chronoq.errors import ValidationError
from chronoq.ports.coordination import Leadership, Member, ShardAssignment

T = TypeVar("T")

ASSIGN_CHANNEL = "assign"
"""The Notifier channel (``chronoq_assign`` in PostgreSQL) that a new assignment is sent on;
the message is the new assignment epoch."""

LEASE_NAME = "chronoq"

TRY_LEAD = (
    "INSERT INTO leader_lease AS l (name, holder, epoch, expires_at)"
    " VALUES ($1, $2, 1, now() + make_interval(secs => $3))"
    " ON CONFLICT (name) DO UPDATE SET"
    " holder = EXCLUDED.holder,"
    " epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()"
    " THEN l.epoch ELSE l.epoch + 1 END,"
    " expires_at = greatest(l.expires_at, EXCLUDED.expires_at)"
    " WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()"
    " RETURNING holder, epoch, expires_at"
)
"""Acquire or renew, atomically; no row returned = someone else holds a live lease.
A holder whose own lease lapsed starts a new term (it must have demoted itself). A
renewal never shortens the lease: a call that waited for the row lock computed its
``now()`` earlier than the grant it waited for."""

RESIGN = (
    "UPDATE leader_lease SET holder = NULL, expires_at = least(expires_at, now())"
    " WHERE name = $1 AND holder = $2"
)

LEADER = (
    "SELECT holder, epoch, expires_at FROM leader_lease"
    " WHERE name = $1 AND holder IS NOT NULL AND expires_at > now()"
)

LOCK_LEADER = (
    "SELECT epoch FROM leader_lease WHERE name = $1 AND holder = $2 AND epoch = $3"
    " AND expires_at > clock_timestamp() FOR UPDATE"
)
"""The fence of leader work: the caller's live lease at its epoch, locked for the transaction."""

BUMP_ASSIGNMENT_EPOCH = "UPDATE assignment_epoch SET epoch = epoch + 1 RETURNING epoch"

DELETE_UNNAMED = "DELETE FROM shard_assignments WHERE NOT (shard_id = ANY($1::int[]))"

WRITE_ASSIGNMENTS = (
    "INSERT INTO shard_assignments (shard_id, owner, epoch, assigned_at)"
    " SELECT s, o, $3, clock_timestamp() FROM unnest($1::int[], $2::text[]) AS t(s, o)"
    " ORDER BY s"
    " ON CONFLICT (shard_id) DO UPDATE SET owner = EXCLUDED.owner, epoch = EXCLUDED.epoch,"
    " assigned_at = EXCLUDED.assigned_at"
)

NOTIFY_ASSIGN = "SELECT pg_notify('chronoq_" + ASSIGN_CHANNEL + "', $1)"

ASSIGNMENT_OF = "SELECT shard_id, epoch FROM shard_assignments WHERE owner = $1 ORDER BY shard_id"

ASSIGNMENTS = "SELECT shard_id, owner, epoch FROM shard_assignments ORDER BY shard_id"

HEARTBEAT = (
    "INSERT INTO members (member_id, role, host, pid, info, started_at, heartbeat_at)"
    " VALUES ($1, $2, $3, $4, $5::jsonb, now(), now())"
    " ON CONFLICT (member_id) DO UPDATE SET role = EXCLUDED.role, host = EXCLUDED.host,"
    " pid = EXCLUDED.pid, info = EXCLUDED.info, heartbeat_at = EXCLUDED.heartbeat_at"
)

LEAVE = "DELETE FROM members WHERE member_id = $1"

MEMBERS = (
    "SELECT member_id, role, host, pid, info, heartbeat_at FROM members"
    " WHERE heartbeat_at > now() - make_interval(secs => $2)"
    " AND ($1::text IS NULL OR role = $1) ORDER BY member_id"
)


_ASSIGN_LOCK_TIMEOUT_MS = 2000


class PostgresCoordination:
    """The Coordination port over PostgreSQL. ``dsn``: ``postgresql://user@host:port/db``."""

    def __init__(
        self,
        dsn: str,
        *,
        lease_name: str = LEASE_NAME,
        min_size: int = 1,
        max_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        self._lease = lease_name
        self._pool = PgPool(
            dsn, owner="PostgresCoordination", min_size=min_size, max_size=max_size,
            connect_timeout=connect_timeout,
        )  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool and apply the migrations (serialized with every other starter)."""
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    # -- leadership --------------------------------------------------------------------------

    async def try_lead(self, candidate: str, ttl: float) -> Leadership | None:
        _check_name(candidate, "candidate")
        _check_ttl(ttl)
        with translated("try_lead"):
            row = await self._connected().fetchrow(TRY_LEAD, self._lease, candidate, float(ttl))
        return None if row is None else Leadership(holder=row[0], epoch=row[1], expires_at=row[2])

    async def resign(self, candidate: str) -> None:
        with translated("resign"):
            await self._connected().execute(RESIGN, self._lease, candidate)

    async def leader(self) -> Leadership | None:
        with translated("leader"):
            row = await self._connected().fetchrow(LEADER, self._lease)
        return None if row is None else Leadership(holder=row[0], epoch=row[1], expires_at=row[2])

    # -- membership --------------------------------------------------------------------------

    async def heartbeat(self, member: Member) -> None:
        _check_name(member.member_id, "member_id")
        info = json.dumps(dict(member.info))
        with translated("heartbeat"):
            await self._connected().execute(
                HEARTBEAT, member.member_id, member.role, member.host, member.pid, info
            )

    async def leave(self, member_id: str) -> None:
        with translated("leave"):
            await self._connected().execute(LEAVE, member_id)

    async def members(self, role: str | None = None, *, ttl: float) -> list[Member]:
        _check_ttl(ttl)
        with translated("members"):
            rows = await self._connected().fetch(MEMBERS, role, float(ttl))
        return [
            Member(
                member_id=r[0],
                role=r[1],
                host=r[2],
                pid=r[3],
                info={str(k): str(v) for k, v in json.loads(r[4]).items()},
                heartbeat_at=r[5],
            )
            for r in rows
        ]

    # -- shard assignment --------------------------------------------------------------------

    async def assign_shards(
        self, leader: str, leader_epoch: int, owners: Mapping[int, str]
    ) -> int | None:
        shards = sorted(owners)
        for shard in shards:
            if not isinstance(shard, int) or shard < 0:
                raise ValidationError(f"shard ids are ints >= 0, got {shard!r}", field="owners")
            _check_name(owners[shard], "owners")
        names = [owners[s] for s in shards]

        async def body(conn: Any) -> int | None:
            # Never wait long on a lock while holding the leader row: a session stuck
            # holding one would otherwise stall renewals and every other coordinator too.
            await conn.execute(f"SET LOCAL lock_timeout = '{_ASSIGN_LOCK_TIMEOUT_MS}ms'")
            if await conn.fetchval(LOCK_LEADER, self._lease, leader, leader_epoch) is None:
                return None  # fenced out: not the live leader at that epoch
            epoch = int(await conn.fetchval(BUMP_ASSIGNMENT_EPOCH))
            await conn.execute(DELETE_UNNAMED, shards)
            await conn.execute(WRITE_ASSIGNMENTS, shards, names, epoch)
            await conn.execute(NOTIFY_ASSIGN, str(epoch))  # delivered at commit, if any
            return epoch

        return await self._transaction("assign_shards", body)

    async def assignment_of(self, owner: str) -> ShardAssignment:
        with translated("assignment_of"):
            rows = await self._connected().fetch(ASSIGNMENT_OF, owner)
        if not rows:
            return ShardAssignment(owner=owner, epoch=0, shards=())
        return ShardAssignment(
            owner=owner, epoch=max(r[1] for r in rows), shards=tuple(r[0] for r in rows)
        )

    async def assignments(self) -> dict[int, tuple[str, int]]:
        with translated("assignments"):
            rows = await self._connected().fetch(ASSIGNMENTS)
        return {r[0]: (r[1], r[2]) for r in rows}

    # -- plumbing ----------------------------------------------------------------------------

    def _connected(self) -> Any:
        return self._pool.get()

    async def _transaction(self, what: str, body: Callable[[Any], Awaitable[T]]) -> T:
        return await self._pool.transaction(what, body)


def _check_name(value: object, field: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{field} must be a non-empty string, got {value!r}", field=field)


def _check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValidationError(f"ttl must be > 0 seconds, got {ttl!r}", field="ttl")
