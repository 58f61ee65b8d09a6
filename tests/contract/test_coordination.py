"""The Coordination contract, on every adapter: in-process memory and real PostgreSQL.

Leases are short (``TTL`` = 0.3 s) where a test needs one to lapse, and every wait
is a deadline-bounded poll. PostgreSQL cases get a fresh database (``pg_database``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest

from chronoq.adapters.memory import MemoryCoordination, MemoryNotifier
from chronoq.adapters.postgres.coordination import PostgresCoordination
from chronoq.adapters.postgres.notify import PostgresNotifier
from chronoq.errors import UnavailableError, ValidationError
from chronoq.ports.coordination import Coordination, Leadership, Member, ShardAssignment
from chronoq.testing import FakeClock

from .conftest import CONNECT_TIMEOUT

T = TypeVar("T")

TTL = 0.3
LONG = 30.0
DEADLINE = 10.0


async def eventually(probe: Callable[[], Awaitable[T | None]], within: float = DEADLINE) -> T:
    """Poll ``probe`` until it returns something other than None/False, or fail."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


@pytest.fixture(params=["memory", "postgres"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """A factory of started coordination objects sharing ONE state (memory: the same
    object; PostgreSQL: separate pools on the same fresh database)."""
    made: list[Any] = []
    if request.param == "memory":
        shared = MemoryCoordination()

        async def factory() -> Any:
            return shared

    else:
        dsn = request.getfixturevalue("pg_database")

        async def factory() -> Any:
            coordination = PostgresCoordination(dsn, max_size=2)
            await coordination.start()
            made.append(coordination)
            return coordination

    yield factory
    for coordination in made:
        await coordination.close()


@pytest.fixture
async def coord(make: Callable[[], Awaitable[Coordination]]) -> Coordination:
    return await make()


# -- leadership ------------------------------------------------------------------------------


async def test_the_first_candidate_leads_with_epoch_1(coord: Coordination) -> None:
    assert await coord.leader() is None
    before = datetime.now(UTC)
    lease = await coord.try_lead("a", LONG)
    assert lease is not None
    assert (lease.holder, lease.epoch) == ("a", 1)
    assert abs(lease.expires_at - (before + timedelta(seconds=LONG))) < timedelta(seconds=5)
    assert await coord.leader() == lease


async def test_another_candidate_cannot_lead_while_the_lease_is_live(
    make: Callable[[], Awaitable[Coordination]],
) -> None:
    one, two = await make(), await make()
    lease = await one.try_lead("a", LONG)
    assert await two.try_lead("b", LONG) is None
    assert await two.leader() == lease


async def test_renewal_keeps_the_epoch_and_extends_the_lease(coord: Coordination) -> None:
    first = await coord.try_lead("a", LONG)
    second = await coord.try_lead("a", LONG)
    assert first is not None and second is not None
    assert (second.holder, second.epoch) == ("a", 1)
    assert second.expires_at >= first.expires_at
    assert await coord.leader() == second


async def test_after_expiry_another_candidate_leads_with_the_next_epoch(
    make: Callable[[], Awaitable[Coordination]],
) -> None:
    one, two = await make(), await make()
    assert await one.try_lead("a", TTL) is not None
    assert await two.try_lead("b", LONG) is None
    lease = await eventually(lambda: two.try_lead("b", LONG))
    assert (lease.holder, lease.epoch) == ("b", 2)
    assert await one.try_lead("a", LONG) is None  # the old holder cannot renew
    assert await one.leader() == lease


async def test_a_holder_whose_lease_lapsed_starts_a_new_term(coord: Coordination) -> None:
    assert await coord.try_lead("a", TTL) is not None
    await eventually(lambda: _no_leader(coord))
    lease = await coord.try_lead("a", LONG)
    assert lease is not None and lease.epoch == 2


async def test_resign_frees_the_lease_at_once(
    make: Callable[[], Awaitable[Coordination]],
) -> None:
    one, two = await make(), await make()
    assert await one.try_lead("a", LONG) is not None
    await two.resign("b")  # not the holder: nothing happens
    assert (await two.leader()) is not None
    await one.resign("a")
    assert await two.leader() is None
    lease = await two.try_lead("b", LONG)
    assert lease is not None and (lease.holder, lease.epoch) == ("b", 2)
    await two.resign("b")
    again = await one.try_lead("a", LONG)  # a new term even for a previous holder
    assert again is not None and again.epoch == 3


async def test_bad_arguments_are_refused(coord: Coordination) -> None:
    with pytest.raises(ValidationError):
        await coord.try_lead("", LONG)
    with pytest.raises(ValidationError):
        await coord.try_lead("a", 0)
    with pytest.raises(ValidationError):
        await coord.members(ttl=-1)
    with pytest.raises(ValidationError):
        await coord.assign_shards("a", 1, {-1: "p"})
    assert await coord.leader() is None


# -- shard assignment ------------------------------------------------------------------------


async def test_assignments_round_trip_under_growing_epochs(coord: Coordination) -> None:
    lease = await _lead(coord, "a")
    assert await coord.assignments() == {}
    assert await coord.assignment_of("p1") == ShardAssignment(owner="p1", epoch=0, shards=())

    first = await coord.assign_shards("a", lease.epoch, {0: "p1", 1: "p2", 2: "p1"})
    assert first is not None and first >= 1
    assert await coord.assignment_of("p1") == ShardAssignment(
        owner="p1", epoch=first, shards=(0, 2)
    )
    assert await coord.assignment_of("p2") == ShardAssignment(owner="p2", epoch=first, shards=(1,))
    assert await coord.assignments() == {0: ("p1", first), 1: ("p2", first), 2: ("p1", first)}

    second = await coord.assign_shards("a", lease.epoch, {0: "p2", 3: "p3"})
    assert second is not None and second > first
    assert await coord.assignments() == {0: ("p2", second), 3: ("p3", second)}
    assert await coord.assignment_of("p1") == ShardAssignment(owner="p1", epoch=0, shards=())
    assert await coord.assignment_of("p2") == ShardAssignment(owner="p2", epoch=second, shards=(0,))

    third = await coord.assign_shards("a", lease.epoch, {})
    assert third is not None and third > second
    assert await coord.assignments() == {}


async def test_a_deposed_leader_cannot_assign(
    make: Callable[[], Awaitable[Coordination]],
) -> None:
    one, two = await make(), await make()
    old = await _lead(one, "a", TTL)
    epoch = await one.assign_shards("a", old.epoch, {0: "p1", 1: "p2"})
    assert epoch is not None
    before = await two.assignments()

    assert await two.assign_shards("b", 1, {0: "p9"}) is None  # never led
    new = await eventually(lambda: two.try_lead("b", LONG))
    assert new.epoch == old.epoch + 1

    assert await one.assign_shards("a", old.epoch, {0: "p3", 1: "p3"}) is None
    assert await two.assign_shards("b", old.epoch, {0: "p3"}) is None  # right holder, old epoch
    assert await two.assignments() == before

    newer = await two.assign_shards("b", new.epoch, {0: "p2", 1: "p1"})
    assert newer is not None and newer > epoch  # assignment epochs grow across leaders
    assert await one.assignments() == {0: ("p2", newer), 1: ("p1", newer)}


async def test_a_lapsed_leader_cannot_assign_even_if_nobody_took_over(
    coord: Coordination,
) -> None:
    lease = await _lead(coord, "a", TTL)
    await eventually(lambda: _no_leader(coord))
    assert await coord.assign_shards("a", lease.epoch, {0: "p1"}) is None
    assert await coord.assignments() == {}


async def test_a_resigned_leader_cannot_assign(coord: Coordination) -> None:
    lease = await _lead(coord, "a")
    await coord.resign("a")
    assert await coord.assign_shards("a", lease.epoch, {0: "p1"}) is None


# -- membership ------------------------------------------------------------------------------


async def test_members_heartbeat_and_leave(
    make: Callable[[], Awaitable[Coordination]],
) -> None:
    one, two = await make(), await make()
    before = datetime.now(UTC) - timedelta(seconds=5)
    await one.heartbeat(Member(member_id="m1", role="picker", host="h1", pid=11, info={"v": "1"}))
    await two.heartbeat(Member(member_id="m2", role="worker", host="h2", pid=22))

    found = await one.members(ttl=LONG)
    assert [m.member_id for m in found] == ["m1", "m2"]
    m1 = found[0]
    assert (m1.role, m1.host, m1.pid, dict(m1.info)) == ("picker", "h1", 11, {"v": "1"})
    assert m1.heartbeat_at is not None and m1.heartbeat_at > before
    assert [m.member_id for m in await two.members("picker", ttl=LONG)] == ["m1"]
    assert [m.member_id for m in await two.members("api", ttl=LONG)] == []

    await one.heartbeat(Member(member_id="m1", role="picker", host="h1", pid=11, info={"v": "2"}))
    (again,) = await two.members("picker", ttl=LONG)
    assert dict(again.info) == {"v": "2"}
    assert again.heartbeat_at is not None and again.heartbeat_at >= m1.heartbeat_at

    await one.leave("m1")
    await one.leave("m1")  # twice is fine
    assert [m.member_id for m in await two.members(ttl=LONG)] == ["m2"]


async def test_a_silent_member_ages_out_and_comes_back(coord: Coordination) -> None:
    member = Member(member_id="m1", role="picker")
    await coord.heartbeat(member)
    assert [m.member_id for m in await coord.members(ttl=TTL)] == ["m1"]

    async def gone() -> bool:
        return not await coord.members(ttl=TTL)

    await eventually(gone)
    assert [m.member_id for m in await coord.members(ttl=LONG)] == ["m1"]
    await coord.heartbeat(member)
    assert [m.member_id for m in await coord.members(ttl=TTL)] == ["m1"]


# -- memory only -----------------------------------------------------------------------------


async def test_memory_follows_its_injected_clock_and_announces_assignments() -> None:
    clock = FakeClock()
    start = clock.now()
    notifier = MemoryNotifier()
    heard: list[str] = []
    notifier.subscribe("assign", heard.append)
    coord = MemoryCoordination(clock, notifier)

    lease = await coord.try_lead("a", 10)
    assert lease == Leadership(holder="a", epoch=1, expires_at=start + timedelta(seconds=10))
    await clock.advance(9.999)
    assert await coord.try_lead("b", 10) is None
    await clock.advance(0.001)  # expires_at <= now: lapsed
    assert await coord.leader() is None
    taken = await coord.try_lead("b", 10)
    assert taken is not None and taken.epoch == 2

    epoch = await coord.assign_shards("b", 2, {0: "p1"})
    assert heard == [str(epoch)]
    await coord.heartbeat(Member(member_id="m1", role="picker"))
    await clock.advance(5)
    assert await coord.members(ttl=5) == []
    assert len(await coord.members(ttl=5.001)) == 1


# -- PostgreSQL only -------------------------------------------------------------------------


async def test_racing_candidates_never_share_an_epoch_or_overlap(pg_database: str) -> None:
    ttl = 0.01
    one = PostgresCoordination(pg_database, min_size=4, max_size=10)
    two = PostgresCoordination(pg_database, min_size=4, max_size=10)
    await asyncio.gather(one.start(), two.start())
    rng = random.Random(7)
    won: list[Leadership] = []

    async def attempt(coord: PostgresCoordination, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        lease = await coord.try_lead(name, ttl)
        if lease is not None:
            assert lease.holder == name
            won.append(lease)

    try:
        # 50 rounds of both at once, alternately against a live and a lapsed lease ...
        for round_ in range(50):
            await asyncio.gather(attempt(one, "a", 0), attempt(two, "b", 0))
            if round_ % 2:
                await asyncio.sleep(ttl * 1.2)
        # ... then 50 + 50 calls at once, spread over a few lease lengths.
        await asyncio.gather(
            *(attempt(one, "a", rng.uniform(0, ttl * 5)) for _ in range(50)),
            *(attempt(two, "b", rng.uniform(0, ttl * 5)) for _ in range(50)),
        )
    finally:
        await asyncio.gather(one.close(), two.close())

    holders: dict[int, set[str]] = {}
    for lease in won:
        holders.setdefault(lease.epoch, set()).add(lease.holder)
    assert all(len(names) == 1 for names in holders.values()), holders
    epochs = sorted(holders)
    assert epochs == list(range(1, len(epochs) + 1))  # every term was seen: no epoch skipped
    assert len(epochs) > 10  # the lease really changed hands (or terms) many times
    # Each term starts (its first grant's expires_at - ttl, all on the server's clock)
    # no earlier than the previous term's last expiry: never two live holders at once.
    for epoch in epochs[1:]:
        starts = min(le.expires_at for le in won if le.epoch == epoch) - timedelta(seconds=ttl)
        previous_end = max(le.expires_at for le in won if le.epoch == epoch - 1)
        assert starts >= previous_end, (epoch, starts, previous_end)


async def test_the_lease_runs_on_the_servers_clock(pg_database: str) -> None:
    coord = PostgresCoordination(pg_database)
    await coord.start()
    conn = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        lease = await coord.try_lead("a", LONG)
        assert lease is not None
        server_now = await conn.fetchval("SELECT now()")
        assert abs(lease.expires_at - server_now - timedelta(seconds=LONG)) < timedelta(seconds=1)
        # Move the lease into the server's past: it is over, whatever the caller's clock says.
        await conn.execute("UPDATE leader_lease SET expires_at = now() - interval '1 second'")
        assert await coord.leader() is None
        taken = await coord.try_lead("b", LONG)
        assert taken is not None and taken.epoch == 2
    finally:
        await conn.close()
        await coord.close()


async def test_assign_shards_notifies_pickers_on_commit(pg_database: str) -> None:
    coord = PostgresCoordination(pg_database)
    notifier = PostgresNotifier(pg_database)
    heard: list[str] = []
    notifier.subscribe("assign", heard.append)
    await coord.start()
    await notifier.start()
    try:
        lease = await _lead(coord, "a")
        assert await coord.assign_shards("z", 7, {0: "p1"}) is None  # fenced: no hint
        epoch = await coord.assign_shards("a", lease.epoch, {0: "p1"})
        await eventually(lambda: _true(bool(heard)))
        assert heard == [str(epoch)]
    finally:
        await notifier.close()
        await coord.close()


async def test_assignment_epochs_keep_growing_across_restarts_and_leaders(
    pg_database: str,
) -> None:
    """The epoch a store fences with must never repeat: not after every process of the
    coordination restarted, not under a new leader term, not after an empty assignment."""
    seen: list[int] = []
    for round_ in range(3):
        coord = PostgresCoordination(pg_database)
        await coord.start()
        try:
            lease = await _lead(coord, f"leader-{round_}", TTL)
            for owners in ({0: "p1", 1: "p2"}, {}):
                epoch = await coord.assign_shards(lease.holder, lease.epoch, owners)
                assert epoch is not None
                seen.append(epoch)
            await coord.resign(lease.holder)
        finally:
            await coord.close()
    assert seen == sorted(set(seen)), seen  # strictly growing
    assert len(seen) == 6


async def test_the_coordination_never_touches_the_stores_fence(pg_database: str) -> None:
    """Fencing is the store's own record now: assigning shards writes nothing there."""
    coord = PostgresCoordination(pg_database)
    await coord.start()
    conn = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        lease = await _lead(coord, "a")
        assert await coord.assign_shards("a", lease.epoch, {0: "p1", 1: "p2"}) is not None
        assert await conn.fetchval("SELECT epoch FROM fence_epoch") == 0
        assert await conn.fetchval("SELECT count(*) FROM fenced_shards") == 0
    finally:
        await conn.close()
        await coord.close()


async def test_postgres_unavailable_is_an_unavailable_error(pg_database: str) -> None:
    coord = PostgresCoordination(pg_database)
    with pytest.raises(UnavailableError):
        await coord.try_lead("a", LONG)  # not started
    down = PostgresCoordination("postgresql://postgres@127.0.0.1:1/x", connect_timeout=2)
    with pytest.raises(UnavailableError):
        await down.start()
    await coord.start()
    await coord.close()
    await coord.close()  # twice is fine
    with pytest.raises(UnavailableError):
        await coord.leader()


# -- helpers ---------------------------------------------------------------------------------


async def _lead(coord: Coordination, name: str, ttl: float = LONG) -> Leadership:
    lease = await coord.try_lead(name, ttl)
    assert lease is not None
    return lease


async def _no_leader(coord: Coordination) -> bool:
    return await coord.leader() is None


async def _true(value: bool) -> bool:
    return value
