"""The Coordination contract, on every adapter: in-process memory, real PostgreSQL and
a real etcd.

Leases are short (``TTL`` = 0.3 s) where a test needs one to lapse (etcd raises its
leases to its minimum, 2 s), and every wait is a deadline-bounded poll. PostgreSQL
cases get a fresh database (``pg_database``); etcd cases a fresh key prefix on one
etcd per module (``etcd_server``), and the etcd-only tests at the end their own etcd
where they stop it.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from chronoq.adapters.etcd import EtcdCoordination, parse_etcd_url
from chronoq.adapters.etcd import coordination as etcd_coordination
from chronoq.adapters.etcd import etcd_coordination as etcd_coordination_module
from chronoq.adapters.memory import MemoryCoordination, MemoryNotifier
from chronoq.adapters.postgres.coordination import PostgresCoordination
from chronoq.adapters.postgres.notify import PostgresNotifier
from chronoq.errors import ConfigError, UnavailableError, ValidationError
from chronoq.ports.coordination import Coordination, Leadership, Member, ShardAssignment
from chronoq.runtime.servers.etcd import cluster_url, etcd_cluster
from chronoq.testing import FakeClock
from tests.support.etcd_server import etcd_server, require_etcd, running_etcd  # noqa: F401
from tests.support.waiting import wait_for as wait_for_sync

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


@pytest.fixture(params=["memory", "postgres", "etcd"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """A factory of started coordination objects sharing ONE state (memory: the same
    object; PostgreSQL: separate pools on the same fresh database)."""
    made: list[Any] = []
    if request.param == "memory":
        shared = MemoryCoordination()

        async def factory() -> Any:
            return shared

    elif request.param == "etcd":
        url = request.getfixturevalue("etcd_server").url + f"/t{uuid.uuid4().hex[:12]}"

        async def factory() -> Any:
            coordination = etcd_coordination(url)
            await coordination.start()
            made.append(coordination)
            return coordination

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


# -- etcd only -------------------------------------------------------------------------------


async def test_etcd_racing_candidates_never_share_an_epoch(request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("etcd_server").url + f"/race{uuid.uuid4().hex[:8]}"
    coords = [etcd_coordination(url) for _ in range(3)]
    await asyncio.gather(*(c.start() for c in coords))
    won: list[Leadership] = []
    try:
        rng = random.Random(8)
        for _ in range(25):  # each round: all three at once on a free lease, the winner resigns
            order = rng.sample(range(3), 3)  # who sends first changes from round to round
            leases = await asyncio.gather(*(coords[i].try_lead(f"n{i}", LONG) for i in order))
            winners = [lease for lease in leases if lease is not None]
            assert len(winners) == 1, winners  # never two holders of one term
            won.append(winners[0])
            # the losers see the winner; a renewal by the winner keeps its epoch
            assert await coords[0].leader() == winners[0]
            winner = winners[0].holder
            again = await coords[int(winner[1:])].try_lead(winner, LONG)
            assert again is not None and again.epoch == winners[0].epoch
            await coords[int(winner[1:])].resign(winner)
    finally:
        await asyncio.gather(*(c.close() for c in coords))
    epochs = [lease.epoch for lease in won]
    assert epochs == list(range(1, len(won) + 1)), epochs  # one per term, none skipped
    assert len({lease.holder for lease in won}) > 1  # the lease really changed hands


async def test_etcd_expires_at_is_never_after_the_lease_can_pass(
    request: pytest.FixtureRequest,
) -> None:
    """``expires_at`` is a lower bound of the real (etcd's) expiry: another candidate can
    only take over after it, and at least the ttl asked for (etcd rounds up to whole
    seconds and to its minimum) — so a leader trusting its term until then is safe."""
    url = request.getfixturevalue("etcd_server").url + f"/x{uuid.uuid4().hex[:8]}"
    one, two = etcd_coordination(url), etcd_coordination(url)
    await asyncio.gather(one.start(), two.start())
    try:
        asked = datetime.now(UTC)
        first = await _lead(one, "a", 1.2)
        assert first.expires_at - asked >= timedelta(seconds=1.2)
        await asyncio.sleep(0.5)  # renew half-way: the lease moves on
        renewed = await _lead(one, "a", 1.2)
        assert renewed.epoch == first.epoch and renewed.expires_at > first.expires_at
        taken = await eventually(lambda: two.try_lead("b", LONG))
        took_at = datetime.now(UTC)
        assert taken.epoch == first.epoch + 1
        assert took_at >= renewed.expires_at, (took_at, renewed.expires_at)
        # ... and not much later: etcd checks for expired leases every 0.5 s
        assert took_at - renewed.expires_at < timedelta(seconds=2.5)
    finally:
        await asyncio.gather(one.close(), two.close())


async def test_etcd_liveness_does_not_compare_clocks(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member whose clock is an hour behind is live while it heartbeats, and dead once it
    stops: liveness is when a READER saw its key change, not the writer's timestamp."""
    url = request.getfixturevalue("etcd_server").url + f"/k{uuid.uuid4().hex[:8]}"
    writer, reader = etcd_coordination(url), etcd_coordination(url)
    await asyncio.gather(writer.start(), reader.start())
    try:
        skewed = datetime.now(UTC) - timedelta(hours=1)
        monkeypatch.setattr(etcd_coordination_module, "_now", lambda: skewed)
        await writer.heartbeat(Member(member_id="late", role="worker"))
        (seen,) = await reader.members("worker", ttl=TTL)
        assert seen.heartbeat_at == skewed  # shown as written, not used to judge
        assert await eventually(lambda: _none_live(reader, TTL))
        await writer.heartbeat(Member(member_id="late", role="worker"))
        assert [m.member_id for m in await reader.members("worker", ttl=TTL)] == ["late"]
    finally:
        await asyncio.gather(writer.close(), reader.close())


async def _none_live(coord: Coordination, ttl: float) -> bool:
    return not await coord.members(ttl=ttl)


async def test_etcd_epochs_keep_growing_across_restarts_and_leaders(tmp_path: Any) -> None:
    """etcd SIGKILLed and restarted on its data dir: both counters survive, and so does a
    live leader's lease (etcd restores leases): its term goes on, nobody else takes it."""
    leader_epochs: list[int] = []
    assignment_epochs: list[int] = []
    with running_etcd(tmp_path / "etcd") as server:
        for round_ in range(3):
            coord = etcd_coordination(server.url)
            await coord.start()
            try:
                lease = await _lead(coord, f"leader-{round_}")
                leader_epochs.append(lease.epoch)
                for owners in ({0: "p1", 1: "p2"}, {}):
                    epoch = await coord.assign_shards(lease.holder, lease.epoch, owners)
                    assert epoch is not None
                    assignment_epochs.append(epoch)
                server.kill()  # a crash with the term live
                server.start()
                assert await coord.leader() == lease  # the key and its lease came back
                assert await coord.try_lead("intruder", LONG) is None
                renewed = await coord.try_lead(lease.holder, LONG)
                assert renewed is not None and renewed.epoch == lease.epoch
                assert await coord.assignments() == {}
                await coord.resign(lease.holder)
            finally:
                await coord.close()
    assert leader_epochs == [1, 2, 3]
    assert assignment_epochs == sorted(set(assignment_epochs)), assignment_epochs
    # the first assignment epoch is seeded from the clock (ms): above any older store fence
    assert assignment_epochs[0] > 1_700_000_000_000


async def test_etcd_unreachable_is_an_unavailable_error_quickly(tmp_path: Any) -> None:
    closed = etcd_coordination("etcd://127.0.0.1:1/x?timeout=0.5")
    began = time.monotonic()
    with pytest.raises(UnavailableError, match="coordination"):
        await closed.start()
    assert time.monotonic() - began < 2
    with pytest.raises(UnavailableError):
        await closed.try_lead("a", LONG)  # not started

    # A listener that never answers (a hung etcd): bounded by the timeout, not forever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        hung = etcd_coordination(f"etcd://127.0.0.1:{silent.getsockname()[1]}?timeout=0.5")
        began = time.monotonic()
        with pytest.raises(UnavailableError):
            await hung.start()
        assert time.monotonic() - began < 2
        await hung.close()

    with running_etcd(tmp_path / "etcd") as server:
        coord = etcd_coordination(server.url + "?timeout=0.5")
        await coord.start()
        try:
            assert await _lead(coord, "a")
            server.kill()
            for call in (
                coord.try_lead("a", LONG),
                coord.leader(),
                coord.members(ttl=LONG),
                coord.heartbeat(Member(member_id="m", role="picker")),
                coord.assign_shards("a", 1, {0: "p"}),
                coord.assignment_of("p"),
            ):
                began = time.monotonic()
                with pytest.raises(UnavailableError):
                    await call
                assert time.monotonic() - began < 2
            server.start()  # back: the same coordination object works again
            lease = await eventually(lambda: coord.try_lead("a", LONG))
            assert lease.epoch == 1
        finally:
            await coord.close()
            await coord.close()  # twice is fine


async def test_etcd_fails_over_between_endpoints(tmp_path: Any) -> None:
    """A URL naming three members: the leading etcd member SIGKILLed, the coordination
    goes on through the others (the same term, the same epochs)."""
    require_etcd()
    members = etcd_cluster(tmp_path, 3, fast=True)
    try:
        for member in members:
            member.start()
        assert wait_for_sync(lambda: all(m.healthy() for m in members), 30)
        (chief,) = [m for m in members if m.is_leader()]
        others = [m for m in members if m is not chief]
        # The etcd leader first in the URL: the client talks to it until it dies.
        coord = etcd_coordination(cluster_url([chief, *others], "fo") + "?timeout=1")
        await coord.start()
        try:
            lease = await _lead(coord, "a")
            epoch = await coord.assign_shards("a", lease.epoch, {0: "p1"})
            chief.kill()
            renewed = await eventually(lambda: _quiet(coord.try_lead("a", LONG)), within=20)
            assert renewed.epoch == lease.epoch
            newer = await coord.assign_shards("a", lease.epoch, {0: "p2"})
            assert newer is not None and epoch is not None and newer > epoch
            assert await coord.assignments() == {0: ("p2", newer)}
        finally:
            await coord.close()
    finally:
        for member in members:
            member.kill()


async def test_etcd_membership_is_judged_afresh_after_an_etcd_election(tmp_path: Any) -> None:
    """While etcd elects a new leader nobody can write, so a member's heartbeats during the
    election say nothing about it: after a new Raft term its silence is counted from then,
    not from its last write (a live worker reaped for etcd's election would run its runs
    twice). A member silent for a full ttl after that is dead again."""
    require_etcd()
    members = etcd_cluster(tmp_path, 3, fast=True)
    try:
        for member in members:
            member.start()
        assert wait_for_sync(lambda: all(m.healthy() for m in members), 30)
        (chief,) = [m for m in members if m.is_leader()]
        others = [m for m in members if m is not chief]
        coord = etcd_coordination(cluster_url([*others, chief], "el") + "?timeout=1")
        await coord.start()
        try:
            await coord.heartbeat(Member(member_id="w1", role="worker"))
            assert [m.member_id for m in await coord.members(ttl=TTL)] == ["w1"]
            await eventually(lambda: _none(coord.members(ttl=TTL)))  # silent: dead
            chief.kill()  # an election: a new Raft term
            # the first look that etcd answers after the election
            live = await eventually(lambda: _quiet(_ids(coord.members(ttl=TTL))), within=20)
            assert live == ["w1"], "a member was judged by heartbeats etcd could not take"
            await eventually(lambda: _none(coord.members(ttl=TTL)))  # still silent: dead
        finally:
            await coord.close()
    finally:
        for member in members:
            member.kill()


async def _none(call: Awaitable[list[Member]]) -> bool:
    return not await call


async def _ids(call: Awaitable[list[Member]]) -> list[str]:
    return [m.member_id for m in await call]


def test_etcd_urls_are_checked_at_load() -> None:
    for bad in ("etcd://", "etcd://host", "etcd://h:0", "etcd://h:99999", "etcd://h:1?x=1",
                "etcd://h:1?timeout=abc", "etcd://h:1,h2/p", "http://h:1",
                "etcd://h:1?member_lease=1", "etcd://h:1?keep_revisions=5"):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            etcd_coordination(bad)
        message = str(caught.value)
        assert message.startswith("coordination") and "\n" not in message, message
    parsed = parse_etcd_url("etcd://a:1,b:2/some/prefix?timeout=3&member_lease=30&keep_revisions=0")
    assert parsed.endpoints == ("http://a:1", "http://b:2")
    assert (parsed.prefix, parsed.timeout, parsed.member_lease) == ("some/prefix", 3.0, 30.0)
    assert parsed.keep_revisions == 0
    default = parse_etcd_url("etcd://a:1")
    assert (default.prefix, default.timeout, default.keep_revisions) == ("chronoq", 2.0, 10_000)
    assert isinstance(etcd_coordination("etcd://a:1"), EtcdCoordination)  # no connection yet


async def _quiet(call: Awaitable[T]) -> T | None:
    """``call``'s value, or None while the backend is unavailable (for ``eventually``)."""
    try:
        return await call
    except UnavailableError:
        return None


async def test_etcd_the_leader_compacts_the_history(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heartbeats and renewals are etcd revisions that etcd keeps until compacted: the
    leader compacts, keeping ``keep_revisions``."""
    server = request.getfixturevalue("etcd_server")
    coord = etcd_coordination(server.url + f"/c{uuid.uuid4().hex[:8]}?keep_revisions=100")
    await coord.start()
    try:
        await _lead(coord, "a")
        for _ in range(150):
            await coord.heartbeat(Member(member_id="m1", role="worker"))
        monkeypatch.setattr(etcd_coordination_module, "_COMPACT_EVERY", 0.0)
        renewed = await coord.try_lead("a", LONG)
        assert renewed is not None and renewed.epoch == 1
        newest = await _revision(server)
        old = await _range_at(server, newest - 120)
        assert "compacted" in old.get("error", ""), old
        kept = await _range_at(server, newest - 80)
        assert "error" not in kept, kept
        assert [m.member_id for m in await coord.members(ttl=LONG)] == ["m1"]
    finally:
        await coord.close()


async def _revision(server: Any) -> int:
    async with httpx.AsyncClient() as http:
        answer = await http.post(server.client_url + "/v3/kv/range", json={"key": "eA=="})
    return int(answer.json()["header"]["revision"])


async def _range_at(server: Any, revision: int) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            server.client_url + "/v3/kv/range", json={"key": "eA==", "revision": str(revision)}
        )
    result: dict[str, Any] = answer.json()
    return result
