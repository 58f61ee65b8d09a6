"""``PostgresStore``'s picker side (a mixin, like ``outbox``): store-owned fencing
(``fence_shards``) and the claim of due fires (``claim_due``, decided by ``fires``).

A fenced claim share-locks the store's own fence rows it claims under, so a concurrent
``fence_shards`` waits for it (§5.5); the due jobs are locked ``SKIP LOCKED``, so pickers
never wait for each other (see ``sql``'s locking order).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from chronoq.adapters.postgres import limit_indexes, limits, sql
from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.fires import FIRE, Fires
from chronoq.adapters.postgres.rows import aware
from chronoq.domain.jobs import Run
from chronoq.domain.limits import CLAIM_ROUNDS, Deferrals, FireBudget
from chronoq.errors import ValidationError
from chronoq.ports.dispatch import ClaimDueParams

T = TypeVar("T")

_FENCE_LOCK_TIMEOUT_MS = 2000
"""How long ``fence_shards`` waits for claims in flight before it gives up (and the
leader tries again): a claim takes milliseconds; one stuck in a dead client's open
transaction is ended by the server (``idle_in_transaction_session_timeout``)."""


class PostgresPicker:
    """Mixed into ``PostgresStore`` (which provides the two plumbing methods below)."""

    _deferrals: Deferrals
    """Users held back by their fires limit (``limits.Deferrals``), set by the store."""
    _limit_indexes: limit_indexes.LimitIndexes
    """Builds a limit's index when a count first needs it, set by the store."""

    def _connected(self) -> Any:
        raise NotImplementedError

    async def _transaction(self, what: str, body: Callable[[Any], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def fence_shards(self, epoch: int, owners: Mapping[int, str]) -> bool:
        shards = _checked_owners(epoch, owners)
        names = [owners[s] for s in shards]

        async def body(conn: Any) -> bool:
            await conn.execute(f"SET LOCAL lock_timeout = '{_FENCE_LOCK_TIMEOUT_MS}ms'")
            if epoch <= await conn.fetchval(sql.LOCK_FENCE_EPOCH):
                return False  # a deposed leader's late write, or a repeat
            await conn.execute(sql.LOCK_FENCE_OWNERS)  # waits for fenced claims in flight
            await conn.execute(sql.LOCK_FENCED)
            await conn.execute(sql.DELETE_UNFENCED, shards)
            await conn.execute(sql.WRITE_FENCES, shards, names, epoch)
            await conn.execute(sql.DELETE_OLD_OWNERS, names)
            await conn.execute(sql.WRITE_OWNERS, names, epoch)
            await conn.execute(sql.SET_FENCE_EPOCH, epoch)
            return True

        return await self._transaction("fence_shards", body)

    async def claim_due(self, params: ClaimDueParams) -> list[Run]:
        now = aware(params.now, "now")
        horizon = aware(params.horizon, "horizon")

        async def body(conn: Any) -> list[Run]:
            shards = await _claimable_shards(conn, params)
            if shards is not None and not shards:
                return []
            if params.max_fires_per_minute > 0:
                self._limit_indexes.need(limit_indexes.FIRES)
                return await self._claim_fairly(conn, params, shards, horizon)
            rows = await _due(conn, shards, horizon, params.limit, [])
            if not rows:
                return []
            fires = Fires(now)
            for row in rows:
                fires.add(row)
            return await _write(conn, fires)

        return await self._transaction("claim_due", body)

    async def _claim_fairly(
        self, conn: Any, params: ClaimDueParams, shards: list[int] | None, horizon: datetime
    ) -> list[Run]:
        """Round by round as ``sqlite.claim._claim_fairly`` does; a user whose fires lock
        another claim or a trigger holds right now counts as out of budget this time."""
        now = params.now
        budget = FireBudget(params.max_fires_per_minute)
        held = self._deferrals.held()  # counted unlocked: only to leave them out
        counts = await limits.fires_in_window(conn, held, now)
        excluded = budget.hold_out(held, {u: count for u, (count, _o) in counts.items()})
        runs: list[Run] = []
        jobs = 0
        for _round in range(CLAIM_ROUNDS):
            want = params.limit - jobs
            rows = await _due(conn, shards, horizon, want, excluded) if want > 0 else []
            new = budget.uncounted(row[1] for row in rows)
            locked = await limits.lockable(conn, new)
            counts = await limits.fires_in_window(conn, sorted(locked), now)
            used = {user: count for user, (count, _oldest) in counts.items()}
            budget.count(sorted(locked), used, busy=[u for u in new if u not in locked])
            fires = Fires(now)
            for row in rows:
                user = row[1]
                if budget.admit(user):
                    at = self._deferrals.claim_instant(user, row[4], now)
                    budget.spend(user, fires.add(row, at), horizon)
            jobs += fires.job_count
            if fires.job_count:
                runs.extend(await _write(conn, fires))  # the next round sees them advanced
            fresh = sorted(budget.blocked.difference(excluded))
            if len(rows) < want or not fresh:
                break
            excluded.extend(fresh)
        self._deferrals.update(budget, now)
        if params.on_deferred is not None and budget.waiting:
            params.on_deferred(budget.deferred_jobs)
        return runs

    async def next_due_at(self, shards: Sequence[int] | None) -> datetime | None:
        with translated("next_due_at"):
            if shards is None:
                value = await self._connected().fetchval(sql.NEXT_DUE_ALL)
            else:
                value = await self._connected().fetchval(sql.NEXT_DUE_SHARDS, list(shards))
        return value  # type: ignore[no-any-return]


async def _due(
    conn: Any, shards: list[int] | None, horizon: datetime, limit: int, excluded: list[str]
) -> list[Any]:
    """The oldest due jobs (locked, ``SKIP LOCKED``), none of the ``excluded`` users."""
    if shards is None:
        if excluded:
            return list(await conn.fetch(sql.CLAIM_DUE_ALL_BUT, horizon, limit, excluded))
        return list(await conn.fetch(sql.CLAIM_DUE_ALL, horizon, limit))
    if excluded:
        return list(await conn.fetch(sql.CLAIM_DUE_SHARDS_BUT, horizon, limit, shards, excluded))
    return list(await conn.fetch(sql.CLAIM_DUE_SHARDS, horizon, limit, shards))


async def _write(conn: Any, fires: Fires) -> list[Run]:
    inserted = {r[0] for r in await conn.fetch(FIRE, *fires.args())}
    return [run for run in fires.runs if run.run_id in inserted]


async def _claimable_shards(conn: Any, params: ClaimDueParams) -> list[int] | None:
    """The shards a claim may take from (None: all). With ``owner`` set, only those the
    store's fence record gives it at ``epoch``; its owner row share-locked until the claim
    commits."""
    wanted = None if params.shards is None else list(params.shards)
    if params.owner is None:
        return wanted
    if params.epoch is None:
        return []  # fenced without an epoch matches no record: claims nothing
    owned = await owned_shards(conn, params.owner, params.epoch)
    if wanted is None:
        return owned
    allowed = set(wanted)
    return [shard for shard in owned if shard in allowed]


async def owned_shards(conn: Any, owner: str, epoch: int) -> list[int]:
    """``owner``'s shards under ``epoch`` by the store's fence record ([] if it is not
    fenced at ``epoch``), its owner row share-locked until the transaction ends."""
    shards = await conn.fetchval(sql.LOCK_FENCE_OWNER, owner, epoch)
    return list(shards) if shards is not None else []


def _checked_owners(epoch: int, owners: Mapping[int, str]) -> list[int]:
    """The shards of a fence, sorted; ValidationError for a malformed one."""
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise ValidationError(f"epoch must be an int, got {epoch!r}", field="epoch")
    shards = sorted(owners)
    for shard in shards:
        if not isinstance(shard, int) or isinstance(shard, bool) or shard < 0:
            raise ValidationError(f"shard ids are ints >= 0, got {shard!r}", field="owners")
        owner = owners[shard]
        if not isinstance(owner, str) or not owner:
            raise ValidationError(f"owners are non-empty strings, got {owner!r}", field="owners")
    return shards
