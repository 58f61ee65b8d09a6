"""Cluster-state gauges (``chronoq.services.gauges``) on in-memory roles and a fake clock:
only the leader exports the backlog and the live members, the numbers are the store's,
and a failover moves them (and the leader gauge) to the new leader."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client import generate_latest

from chronoq.observability.metrics import Metrics
from chronoq.services.coordinator import Coordinator
from chronoq.services.gauges import ClusterSampler, watch_coordinator

try:
    from chronoq.testing.roles import Stack
except ImportError as exc:  # pragma: no cover - only while the memory adapters are written
    pytest.skip(f"chronoq.testing.roles is not importable yet: {exc}", allow_module_level=True)

Watched = Callable[[Coordinator], Awaitable[Metrics]]


@pytest.fixture
async def watched(stack: Stack) -> AsyncIterator[Watched]:
    """Gauges and a started sampler over a coordinator, in a registry of their own (as in
    a process of its own)."""
    samplers: list[ClusterSampler] = []

    async def watch(coordinator: Coordinator) -> Metrics:
        metrics = Metrics()
        watch_coordinator(metrics, coordinator)
        sampler = ClusterSampler(coordinator, stack.store, stack.coordination, stack.clock,
                                 metrics, member_ttl=stack.member_ttl)  # fmt: skip
        samplers.append(sampler)
        await sampler.start()
        return metrics

    yield watch
    for sampler in samplers:
        await sampler.stop()


def value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


async def test_only_the_leader_exports_the_backlog_and_the_members(
    stack: Stack, watched: Watched
) -> None:
    first = await stack.coordinator("c1")
    await stack.clock.advance(0.5)
    second = await stack.coordinator("c2")
    m1, m2 = await watched(first), await watched(second)
    await stack.picker("p1")
    await stack.worker("w1")
    await stack.store.insert_jobs([stack.job("later", due_in=3600)])
    await stack.clock.advance(3.0)

    assert (value(m1, "coordinator_leader"), value(m2, "coordinator_leader")) == (1.0, 0.0)
    assert value(m1, "coordinator_leader_epoch") == first.epoch and first.epoch
    assert value(m2, "coordinator_leader_epoch") == 0.0
    assert value(m1, "dispatch_backlog", {"state": "due"}) == 0.0
    assert value(m1, "dispatch_oldest_due_age_seconds") == 0.0
    for role in ("coordinator", "picker", "worker"):
        expected = 2.0 if role == "coordinator" else 1.0
        assert value(m1, "cluster_members_alive", {"member_role": role}) == expected, role
    follower = generate_latest(m2.registry).decode()
    assert "dispatch_backlog{" not in follower and "cluster_members_alive{" not in follower


async def test_backlog_counts_due_fires_and_their_age(stack: Stack, watched: Watched) -> None:
    leader = await stack.coordinator("c1")  # no picker: due fires stay unclaimed
    metrics = await watched(leader)
    await stack.store.insert_jobs([stack.job(f"due-{i}") for i in range(3)])
    await stack.clock.advance(5.0)
    assert value(metrics, "dispatch_backlog", {"state": "due"}) == 3.0
    age = value(metrics, "dispatch_oldest_due_age_seconds")
    assert age is not None and 3.0 <= age <= 5.0, age


async def test_a_failover_moves_the_gauges_to_the_new_leader(
    stack: Stack, watched: Watched
) -> None:
    first = await stack.coordinator("c1")
    await stack.clock.advance(0.5)
    second = await stack.coordinator("c2")
    m1, m2 = await watched(first), await watched(second)
    await stack.clock.advance(3.0)
    assert value(m1, "dispatch_backlog", {"state": "queued"}) is not None
    stack.cut(first)  # the leader is partitioned away: it cannot renew its lease
    await stack.clock.run_until(
        lambda: value(m2, "coordinator_leader") == 1.0
        and value(m2, "dispatch_backlog", {"state": "queued"}) is not None,
        within=15.0, step=0.1,
    )  # fmt: skip
    assert value(m1, "coordinator_leader") == 0.0
    assert value(m1, "dispatch_backlog", {"state": "queued"}) is None, "stale numbers linger"
    assert value(m2, "coordinator_leader_epoch") == second.epoch


class _FailingBlob:
    """A blob store that has stopped answering (only what the sampler calls)."""

    async def list_objects(
        self, prefix: str, *, start_after: str = "", limit: int = 1000
    ) -> list[object]:
        raise ConnectionError("blob store down")


async def test_the_leader_reports_each_backends_health(stack: Stack) -> None:
    leader = await stack.coordinator("c1")
    healthy, broken = Metrics(), Metrics()
    samplers = [
        ClusterSampler(leader, stack.store, stack.coordination, stack.clock, healthy,
                       member_ttl=stack.member_ttl, blob=stack.blob),
        ClusterSampler(leader, stack.store, stack.coordination, stack.clock, broken,
                       member_ttl=stack.member_ttl, blob=_FailingBlob()),  # type: ignore[arg-type]
    ]  # fmt: skip
    for sampler in samplers:
        await sampler.start()
    try:
        await stack.clock.advance(3.0)
        for backend in ("store", "coordination", "blob"):
            assert value(healthy, "backend_up", {"backend": backend}) == 1.0, backend
        assert value(healthy, "backend_up", {"backend": "dispatch"}) is None  # no broker
        # One backend down: it says so, and the others and the backlog still report.
        assert value(broken, "backend_up", {"backend": "blob"}) == 0.0
        assert value(broken, "backend_up", {"backend": "store"}) == 1.0
        assert value(broken, "dispatch_backlog", {"state": "due"}) == 0.0
    finally:
        for sampler in samplers:
            await sampler.stop()
    # Stopped (or not leading): no health at all, rather than a last verdict that lingers.
    assert value(healthy, "backend_up", {"backend": "store"}) is None
