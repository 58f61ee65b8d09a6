"""``EtcdCoordination``: leader lease, membership and shard assignment in etcd (v3).

The state model is the port's (``chronoq.ports.coordination``). Keys, under the URL's
prefix ``P`` (default ``chronoq``):

* ``P/leader`` — ``{"holder", "epoch", "expires_at"}``, attached to an etcd lease of
  the leader ttl (rounded up to whole seconds; etcd raises it to its minimum, 2 s with
  default timings). **etcd's lease decides expiry**: the key exists exactly while the
  term is live. ``try_lead`` takes it with a txn that requires the key to be absent
  (``create_revision == 0``) and ``P/leader_epoch`` to be unchanged, and writes both
  (the counter + 1) — so two candidates can never win the same epoch, and the epoch
  grows by one per term. A renewal is a lease keepalive (the key cannot outlive its
  lease, so a successful keepalive proves the term is still ours), then the key's
  ``expires_at`` is rewritten, guarded by its ``create_revision`` (this term).
  ``resign`` revokes the lease (the key goes with it).
* ``expires_at`` is the earliest moment the lease can pass, on the CALLER's clock: the
  time the granting or renewing request was SENT plus the TTL etcd granted. etcd
  counts the TTL from when it handles the request (later), and only ever extends
  leases (a new etcd leader renews them all), so the real expiry is never earlier.
  The coordinator trusts its term for ``leader_ttl * 0.75`` from the renewal it sent,
  which is shorter than any lease etcd grants for that ttl.
* ``P/assignment`` — ``{"epoch", "owners": {shard: picker}}``, one key, never deleted.
  ``assign_shards`` rewrites it in a txn that requires ``P/leader``'s
  ``create_revision`` to be the one the caller's term created (the key exists: the
  lease is live; same create revision: the same term) and the assignment key to be
  unchanged since read. The new epoch is the old + 1; when the key is absent (first
  use, or etcd lost its data) it starts from the wall clock in milliseconds, so that
  it stays above every epoch a store may have recorded before (the store refuses a
  fence that is not newer) unless the clock went back.
* ``P/members/<id>`` — ``{"role", "host", "pid", "info", "heartbeat_at"}`` on a
  lease (``member_lease``, 60 s by default: it only removes the keys of members that
  died; it must exceed ``--member-ttl``). **Liveness is judged without comparing clocks
  across machines**: each reader remembers when it first saw each key's
  ``mod_revision``; a member is heard from within ``ttl`` if its key changed within
  ``ttl`` of the reader's monotonic clock. A reader seeing a key for the first time
  counts it as just heard (errs towards live; the coordinator only trusts membership
  after a member ttl of connectivity anyway). ``heartbeat_at`` is the writer's clock,
  for display.

What survives: with its data dir, an etcd restart keeps every key, both counters and
every lease (etcd restores leases with a fresh TTL), so epochs keep growing and a
leader that outlived the outage may even keep its term. If etcd LOSES its data, leader
epochs restart at 1 (harmless: only this etcd compares them) and assignment epochs
restart from the clock (see above).

Failures: an unreachable cluster (every endpoint) raises ``UnavailableError`` within
about ``timeout`` per endpoint; the caller treats it as a failed renewal. A write whose
reply was lost is safe to repeat: every write is a compare-and-set, and a lease granted
by a lost reply expires by itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chronoq.adapters.etcd.client import (
    NOT_FOUND,
    EtcdClient,
    EtcdError,
    EtcdUrl,
    get,
    kvs,
    put,
    same,
)
from chronoq.errors import UnavailableError, ValidationError
from chronoq.ports.coordination import Leadership, Member, ShardAssignment

_ATTEMPTS = 5
"""Compare-and-set retries when another writer changed a key between read and write."""
_COMPACT_EVERY = 300.0
"""Seconds between the leader's compactions of etcd's history (see ``_compact``)."""


class EtcdCoordination:
    """The Coordination port over etcd's v3 JSON gateway (``etcd://host:port/prefix``)."""

    def __init__(self, url: EtcdUrl) -> None:
        self._url = url
        self._client = EtcdClient(url.endpoints, url.timeout)
        p = url.prefix
        self._leader_key, self._epoch_key = f"{p}/leader", f"{p}/leader_epoch"
        self._assignment_key, self._members_prefix = f"{p}/assignment", f"{p}/members/"
        self._member_leases: dict[str, tuple[int, float]] = {}
        """member id -> (its lease, when this process last renewed it; monotonic)."""
        self._compacted_at = time.monotonic()
        self._seen: dict[str, tuple[int, float]] = {}
        self._term = 0
        """etcd's Raft term when ``_seen`` was last trusted."""
        """member id -> (mod_revision, when this reader first saw it; monotonic)."""

    async def start(self) -> None:
        """Connect (a status request to a member); UnavailableError if none answers."""
        await self._client.open()

    async def close(self) -> None:
        await self._client.close()

    # -- leadership --------------------------------------------------------------------------

    async def try_lead(self, candidate: str, ttl: float) -> Leadership | None:
        _check_name(candidate, "candidate")
        _check_ttl(ttl)
        for _ in range(_ATTEMPTS):
            _, (leader, counter) = await self._client.txn(
                [], [get(self._leader_key), get(self._epoch_key)]
            )
            current = _first(leader)
            if current is not None:
                if current.json()["holder"] != candidate:
                    return None
                renewed = await self._renew(current)
                if renewed is not None:
                    await self._compact()
                    return renewed
                continue  # our term just ended: start a new one
            won = await self._acquire(candidate, ttl, _first(counter))
            if won is not None:
                return won
        return None

    async def _renew(self, current: Any) -> Leadership | None:
        """Keep the term of ``current`` (our key) alive; None if its lease is gone."""
        sent = _now()
        granted = await self._client.keepalive(current.lease)
        if granted <= 0:
            return None
        value = current.json()
        expires_at = max(sent + timedelta(seconds=granted), _parse(value["expires_at"]))
        lease = Leadership(holder=value["holder"], epoch=int(value["epoch"]), expires_at=expires_at)
        try:
            ok, _ = await self._client.txn(
                [same(self._leader_key, "CREATE", current.create_revision)],
                [put(self._leader_key, _lease_json(lease), current.lease)],
            )
        except EtcdError as exc:  # the lease ran out just after the keepalive
            if exc.code != NOT_FOUND:
                raise
            return None
        return lease if ok else None

    async def _compact(self) -> None:
        """Every member heartbeat and lease renewal is a new etcd revision, and etcd keeps
        every revision until compacted (the quota then fills: 2 GB by default, in days).
        So the leader compacts every few minutes, keeping the last ``keep_revisions``; a
        failure only waits for the next time (and etcd's own auto-compaction may be on)."""
        keep = self._url.keep_revisions
        now = time.monotonic()
        if not keep or now - self._compacted_at < _COMPACT_EVERY:
            return
        self._compacted_at = now
        if self._client.revision > keep:
            # Compacted further already, or etcd busy: next time.
            with contextlib.suppress(UnavailableError):
                await self._client.compact(self._client.revision - keep)

    async def _acquire(self, candidate: str, ttl: float, counter: Any) -> Leadership | None:
        epoch = 1 + (int(counter.value) if counter is not None else 0)
        sent = _now()
        lease_id, granted = await self._client.grant(max(1, math.ceil(ttl)))
        lease = Leadership(
            holder=candidate, epoch=epoch, expires_at=sent + timedelta(seconds=granted)
        )
        counter_rev = counter.mod_revision if counter is not None else 0
        ok, _ = await self._client.txn(
            [same(self._leader_key, "CREATE", 0), same(self._epoch_key, "MOD", counter_rev)],
            [put(self._leader_key, _lease_json(lease), lease_id), put(self._epoch_key, str(epoch))],
        )
        if ok:
            return lease
        await self._client.revoke(lease_id)  # lost the race: nobody must renew this one
        return None

    async def resign(self, candidate: str) -> None:
        current = await self._leader_kv()
        if current is not None and current.json()["holder"] == candidate:
            await self._client.revoke(current.lease)  # deletes the key with the lease

    async def leader(self) -> Leadership | None:
        current = await self._leader_kv()
        return None if current is None else _leadership(current.json())

    async def _leader_kv(self) -> Any:
        found, _ = await self._client.range(self._leader_key)
        return found[0] if found else None

    # -- membership --------------------------------------------------------------------------

    async def heartbeat(self, member: Member) -> None:
        _check_name(member.member_id, "member_id")
        key = self._members_prefix + member.member_id
        value = json.dumps({
            "role": member.role, "host": member.host, "pid": member.pid,
            "info": {str(k): str(v) for k, v in member.info.items()},
            "heartbeat_at": _now().isoformat(),
        })  # fmt: skip
        lease = await self._member_lease(member.member_id)
        try:
            answer = await self._client.call("/v3/kv/put", put(key, value, lease)["request_put"])
        except EtcdError as exc:  # the lease expired (e.g. a long etcd outage): a new one
            if exc.code != NOT_FOUND:
                raise
            self._member_leases.pop(member.member_id, None)
            lease = await self._member_lease(member.member_id)
            answer = await self._client.call("/v3/kv/put", put(key, value, lease)["request_put"])
        # Our own write: heard from now, without waiting to read it back.
        self._seen[member.member_id] = (int(answer["header"]["revision"]), time.monotonic())

    async def _member_lease(self, member_id: str) -> int:
        """This member's lease: renewed every third of its TTL, granted when missing."""
        ttl = self._url.member_lease
        held = self._member_leases.get(member_id)
        now = time.monotonic()
        if held is not None and now - held[1] < ttl / 3:
            return held[0]
        if held is not None and await self._client.keepalive(held[0]) > 0:
            self._member_leases[member_id] = (held[0], now)
            return held[0]
        lease_id, _ = await self._client.grant(math.ceil(ttl))
        self._member_leases[member_id] = (lease_id, now)
        return lease_id

    async def leave(self, member_id: str) -> None:
        await self._client.delete(self._members_prefix + member_id)
        held = self._member_leases.pop(member_id, None)
        if held is not None:
            await self._client.revoke(held[0])

    async def members(self, role: str | None = None, *, ttl: float) -> list[Member]:
        _check_ttl(ttl)
        found, _ = await self._client.range(self._members_prefix, prefix=True)
        now = time.monotonic()
        if self._client.raft_term != self._term:
            # etcd elected a new leader since the last look: for a second or so nobody could
            # write, so heartbeats that did not land say nothing about the members. Start
            # every observation afresh (a live member is then judged after a full ttl),
            # rather than reap a worker for etcd's election (a run would execute twice).
            self._term = self._client.raft_term
            self._seen = {}
        seen: dict[str, tuple[int, float]] = {}
        live = []
        for kv in found:  # every role: each call keeps every member's observation fresh
            member_id = kv.key.removeprefix(self._members_prefix)
            before = self._seen.get(member_id)
            seen[member_id] = (
                before if before is not None and before[0] == kv.mod_revision
                else (kv.mod_revision, now)
            )  # fmt: skip
            value = kv.json()
            if now - seen[member_id][1] < ttl and role in (None, value["role"]):
                live.append(_member(member_id, value))
        self._seen = seen
        return live

    # -- shard assignment --------------------------------------------------------------------

    async def assign_shards(
        self, leader: str, leader_epoch: int, owners: Mapping[int, str]
    ) -> int | None:
        for shard, owner in owners.items():
            if not isinstance(shard, int) or isinstance(shard, bool) or shard < 0:
                raise ValidationError(f"shard ids are ints >= 0, got {shard!r}", field="owners")
            _check_name(owner, "owners")
        for _ in range(_ATTEMPTS):
            _, (lead, current) = await self._client.txn(
                [], [get(self._leader_key), get(self._assignment_key)]
            )
            term = _first(lead)
            if term is None:
                return None  # no live lease: fenced out
            value = term.json()
            if value["holder"] != leader or int(value["epoch"]) != leader_epoch:
                return None
            previous = _first(current)
            if previous is None:
                epoch = max(1, time.time_ns() // 1_000_000)  # see the module doc
            else:
                epoch = int(previous.json()["epoch"]) + 1
            body = json.dumps(
                {"epoch": epoch, "owners": {str(s): owners[s] for s in sorted(owners)}}
            )
            ok, _ = await self._client.txn(
                [same(self._leader_key, "CREATE", term.create_revision),
                 same(self._assignment_key, "MOD", previous.mod_revision if previous else 0)],
                [put(self._assignment_key, body)],
            )  # fmt: skip
            if ok:
                return epoch
        raise UnavailableError("coordination: the shard assignment kept changing; retry")

    async def assignment_of(self, owner: str) -> ShardAssignment:
        assigned = await self.assignments()
        shards = tuple(s for s, (o, _) in assigned.items() if o == owner)
        epoch = next(iter(assigned.values()))[1] if shards else 0
        return ShardAssignment(owner=owner, epoch=epoch, shards=shards)

    async def assignments(self) -> dict[int, tuple[str, int]]:
        found, _ = await self._client.range(self._assignment_key)
        if not found:
            return {}
        value = found[0].json()
        epoch = int(value["epoch"])
        return {int(s): (o, epoch) for s, o in sorted(value["owners"].items(), key=_shard)}


def _first(response: Any) -> Any:
    found = kvs(response.get("response_range", {}))
    return found[0] if found else None


def _shard(item: tuple[str, str]) -> int:
    return int(item[0])


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _lease_json(lease: Leadership) -> str:
    return json.dumps({"holder": lease.holder, "epoch": lease.epoch,
                       "expires_at": lease.expires_at.isoformat()})  # fmt: skip


def _leadership(value: Any) -> Leadership:
    return Leadership(holder=value["holder"], epoch=int(value["epoch"]),
                      expires_at=_parse(value["expires_at"]))  # fmt: skip


def _member(member_id: str, value: Any) -> Member:
    return Member(
        member_id=member_id, role=value["role"], host=value["host"], pid=int(value["pid"]),
        info=dict(value["info"]), heartbeat_at=_parse(value["heartbeat_at"]),
    )  # fmt: skip


def _check_name(value: object, field: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{field} must be a non-empty string, got {value!r}", field=field)


def _check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValidationError(f"ttl must be > 0 seconds, got {ttl!r}", field="ttl")
