"""R9: partition one picker away from PostgreSQL, then heal the link.

The picker runs in its own network namespace, joined to the host by a veth pair;
PostgreSQL listens on the host end too. ``ip link set <veth> down`` cuts it off:
its connections hang (no reset), it cannot heartbeat or renew anything. Where
network namespaces are not available (no CAP_NET_ADMIN), the partition is
emulated by freezing the picker (SIGSTOP): a frozen process cannot renew anything
either, and its connections resume where they were when it is thawed.

Must hold: its shards move to the other picker (time measured); a claim under its
old (owner, epoch) is refused by the store (fencing, checked directly); after
healing it resumes as a live member with the same pid and gets shards again; no
fire runs twice and none is lost (I1–I7).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest

from chronoq.adapters.postgres import PostgresStore
from chronoq.adapters.postgres.picker import owned_shards
from chronoq.domain.clock import format_rfc3339
from chronoq.ports.dispatch import ClaimDueParams
from tests.support.times import at, utcnow
from tests.support.waiting import wait_for

from .conftest import Chaos, private_postgres
from .harness import LEADER_TTL, MEMBER_TTL, SETTLE, SHARDS, ChaosPostgres, hold

pytestmark = pytest.mark.chaos

PARTITION = 8.0


@dataclass(frozen=True, slots=True)
class Net:
    """A network namespace joined to the host by a veth pair (None fields: unavailable)."""

    namespace: str | None = None
    host_if: str = ""
    host_ip: str = ""
    why_not: str = ""

    def link(self, state: str) -> None:
        subprocess.run(["ip", "link", "set", self.host_if, state], check=True, timeout=10)


def _ip(*args: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    if os.environ.get("CHRONOQ_CHAOS_NO_NETNS"):
        yield Net(why_not="CHRONOQ_CHAOS_NO_NETNS is set")
        return
    tag = uuid.uuid4().hex[:6]
    rng = random.Random(tag)
    subnet = f"10.{rng.randrange(200, 250)}.{rng.randrange(0, 255)}"
    ns, host_if, ns_if = f"chq-{tag}", f"chqh{tag}", f"chqn{tag}"
    try:
        _ip("netns", "add", ns)
    except (OSError, subprocess.SubprocessError) as exc:
        yield Net(why_not=f"ip netns add failed: {exc}")
        return
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{subnet}.1/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("addr", "add", f"{subnet}.2/30", "dev", ns_if, namespace=ns)
        _ip("link", "set", ns_if, "up", namespace=ns)
        _ip("link", "set", "lo", "up", namespace=ns)
        yield Net(namespace=ns, host_if=host_if, host_ip=f"{subnet}.1")
    except (OSError, subprocess.SubprocessError) as exc:
        yield Net(why_not=f"veth set-up failed: {exc}")
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _ip("link", "del", host_if)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _ip("netns", "del", ns)


@pytest.fixture(scope="module")
def pg(net: Net) -> Iterator[ChaosPostgres]:
    listen = [net.host_ip] if net.namespace else []
    hba = [f"host all all {net.host_ip.rsplit('.', 1)[0]}.0/30 trust"] if net.namespace else []
    with private_postgres(fast=True, listen=listen, hba=hba) as server:
        yield server


async def _fenced_claim(dsn: str, owner: str, epoch: int) -> int:
    """Claim everything due in the next hour as ``owner`` at ``epoch``; how many it got."""
    store = PostgresStore(dsn, min_size=1, max_size=1)
    await store.start()
    try:
        now = utcnow()
        params = ClaimDueParams(
            shards=None, now=now, horizon=now + timedelta(hours=1), limit=100, owner=owner,
            epoch=epoch,
        )  # fmt: skip
        runs = await store.claim_due(params)
        return len(runs)
    finally:
        await store.close()


@pytest.mark.chaos(seed=9)
def test_r9_partitioned_picker_is_fenced_and_rejoins(chaos: Chaos, net: Net) -> None:
    sup = chaos.sup
    sup.add_cluster(api=1, coordinator=1, picker=1, worker=2)
    if net.namespace:
        sup.add(
            "picker-2", "picker", dsn=chaos.pg.dsn_for(chaos.database, host=net.host_ip),
            prefix=["ip", "netns", "exec", net.namespace],
        )  # fmt: skip
    else:
        sup.add("picker-2", "picker")
    sup.start()
    sup.wait_cluster()
    mode = "netns" if net.namespace else f"SIGSTOP (no netns: {net.why_not})"

    base = utcnow() + timedelta(seconds=1)
    for i in range(16):
        assert chaos.api.submit(
            payload=chaos.ledger.probe(0.1), cron_schedule="@every 1s",
            next_fire_at=format_rfc3339(base + timedelta(seconds=i / 16)),
        )  # fmt: skip
    for _ in range(30):
        assert chaos.api.submit(payload=chaos.ledger.probe(0.1), next_fire_at=at(2 + 12 * _ / 30))
    hold(2.0)  # fires flow through both pickers
    old_epoch = int(
        chaos.db.fetchval("SELECT max(epoch) FROM fenced_shards WHERE owner = 'picker-2'")
    )
    pid = sup.members["picker-2"].pid

    cut = sup.note("partition", "picker-2", "picker")
    if net.namespace:
        net.link("down")
    else:
        sup.freeze("picker-2")
    moved = wait_for(
        lambda: set(chaos.db.assignment()) == {"picker-1"},
        MEMBER_TTL + 2 * LEADER_TTL + 10, interval=0.05,
    )  # fmt: skip
    moved_in = time.time() - cut.at
    assert moved, f"picker-2's shards did not move: {chaos.db.assignment().keys()}"
    assert len(chaos.db.assignment()["picker-1"]) == SHARDS

    # Fencing: a claim under picker-2's old (owner, epoch) gets nothing, although fires are due.
    got = asyncio.run(_fenced_claim(chaos.db.dsn, "picker-2", old_epoch))
    assert got == 0, f"a stale (picker-2, epoch {old_epoch}) claim took {got} fires"
    hold(PARTITION - (time.time() - cut.at))  # the rest of the partition

    healed = sup.note("heal", "picker-2", "picker")
    if net.namespace:
        net.link("up")
    else:
        sup.thaw("picker-2")
    back = wait_for(
        lambda: chaos.db.live_members("picker").get("picker-2") == pid
        and "picker-2" in chaos.db.assignment(),
        30, interval=0.1,
    )  # fmt: skip
    back_in = time.time() - healed.at
    assert back, (
        f"picker-2 did not rejoin: members {chaos.db.live_members('picker')}, "
        f"owners {set(chaos.db.assignment())}"
    )
    sup.wait_cluster()
    assert sup.members["picker-2"].pid == pid and sup.members["picker-2"].alive

    cutoff = utcnow()
    hold(SETTLE)
    report = chaos.settle_and_check(cutoff, timeout=45)
    print(report)
    print(
        f"R9 ({mode}): shards moved {moved_in:.2f}s after the cut; the picker was back with "
        f"shards {back_in:.2f}s after healing; stale claim at epoch {old_epoch} got {got}"
    )
    assert report.ok, report


async def _hold_claim_locks(dsn: str, owner: str, epoch: int, release: asyncio.Event) -> int:
    """What PostgreSQL holds for a picker cut off in the middle of a claim: an open
    transaction that ran the claim's first statement (``LOCK_FENCE_OWNER``, FOR SHARE on
    the picker's row of the store's fence) and will never send COMMIT. Held until ``release``.

    The connection comes from a ``PostgresStore``'s own pool (a private attribute, on
    purpose): whatever session settings the store gives its connections (say, an idle
    in transaction timeout) apply to this one as they would to the picker's."""
    store = PostgresStore(dsn, min_size=1, max_size=1)
    await store.start()
    rows: list[object] = []
    try:
        async with store._pool.get().acquire() as conn, conn.transaction():
            rows = await owned_shards(conn, owner, epoch)
            await release.wait()
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        pass  # the server ended the idle transaction (idle_in_transaction_session_timeout)
    finally:
        await store.close()
    return len(rows)


@pytest.mark.chaos(seed=19)
def test_r9_picker_cut_off_mid_claim_does_not_stall_the_cluster(chaos: Chaos) -> None:
    """The server-side state of a picker partitioned mid-claim, made on purpose: the test
    opens the claim's transaction as that picker (its first statement, the product's own
    ``LOCK_FENCE_OWNER``) and never commits, then the picker dies. Its shards must still
    move, and a leader must still exist."""
    chaos.cluster(api=1, coordinator=2, picker=2, worker=1)
    epoch = int(chaos.db.fetchval("SELECT max(epoch) FROM fenced_shards WHERE owner = 'picker-2'"))

    async def scenario() -> tuple[bool, tuple[str, int] | None]:
        release = asyncio.Event()
        holder = asyncio.create_task(_hold_claim_locks(chaos.db.dsn, "picker-2", epoch, release))
        try:
            await asyncio.sleep(0.5)  # the claim's locks are taken
            chaos.sup.kill("picker-2")  # its claim connection lives on, half-open
            deadline = time.monotonic() + MEMBER_TTL + 2 * LEADER_TTL + 10
            moved = False
            while time.monotonic() < deadline and not moved:
                moved = set(await asyncio.to_thread(chaos.db.assignment)) == {"picker-1"}
                await asyncio.sleep(0.2)
            return moved, await asyncio.to_thread(chaos.db.leader)
        finally:
            release.set()
            await holder

    moved, leader = asyncio.run(scenario())
    assert moved, f"the dead picker's shards did not move (leader: {leader})"
    assert leader is not None, "no leader while a dead picker's claim transaction hangs"
