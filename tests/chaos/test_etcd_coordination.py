"""Chaos with ``--coordination etcd://``: the cluster of role processes coordinates through
a private etcd while the store stays the private PostgreSQL.

* the leading COORDINATOR SIGKILLed three times: a new leader (a higher epoch, read from
  etcd) within seconds each time;
* etcd itself SIGKILLed and restarted on its data dir, twice: work resumes;
* on a three-member etcd cluster, the LEADING etcd member SIGKILLed (Chronoq goes on
  through the others) and restarted, twice;
* the whole three-member cluster SIGKILLed and restarted, then a coordinator failover.

After each scenario I1–I7 hold, and stronger checks: every probe fire started exactly
once (nothing here kills a picker or a worker, so there is no excuse for a second start),
every leader epoch the coordinators logged was held by ONE node, in growing order, and
the coordinators' logs never show two of them leading at once.
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from chronoq.runtime.servers.etcd import EtcdServer, cluster_url, etcd_cluster
from tests.support.etcd_server import require_etcd
from tests.support.times import at, utcnow
from tests.support.waiting import wait_for

from . import invariants
from .conftest import Chaos
from .etcd_world import PREFIX, etcd_chaos
from .harness import (
    LEADER_TTL,
    SETTLE,
    ChaosPostgres,
    hold,
)

pytestmark = pytest.mark.chaos

FAILOVER_LIMIT = 10.0
OUTAGE = 3.0
"""How long etcd stays down each time (seconds): two leader ttls."""
_ETCD_GAP = 10.0
"""Dispatch may be impaired after etcd comes back: the leader's new term re-assigns and
re-fences, and pickers re-read their assignment (invariants: impaired windows)."""


@pytest.fixture
def etcd_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Teach the invariant checker the etcd faults this module notes."""
    monkeypatch.setitem(invariants._IMPAIRING, ("etcd-kill", "-"), OUTAGE + _ETCD_GAP)
    monkeypatch.setitem(invariants._IMPAIRING, ("etcd-start", "-"), _ETCD_GAP)


def _coordination(url: str) -> tuple[str, ...]:
    return ("--coordination", url)


def _load(chaos: Chaos, rounds: int = 1) -> None:
    for _ in range(rounds):
        chaos.api.submit(payload=chaos.ledger.probe(0.2))
        chaos.api.submit(payload=chaos.ledger.probe(0.2), next_fire_at=at(1.5))


def _start_load(chaos: Chaos) -> None:
    for schedule in ("@every 1s", "@every 2s", "*/2 * * * * *"):
        assert chaos.api.submit(payload=chaos.ledger.probe(0.1), cron_schedule=schedule)


def _check(chaos: Chaos) -> None:
    chaos.sup.wait_cluster()
    cutoff = utcnow()
    hold(SETTLE)
    report = chaos.settle_and_check(cutoff, timeout=45)
    print(report)
    assert report.ok, report
    started = Counter((e.job_id, e.scheduled_for) for e in chaos.ledger.read())
    twice = {fire: n for fire, n in started.items() if n > 1}
    assert not twice, f"fires started more than once: {twice}"
    assert len(started) > 20, "the load did not run"
    _check_terms(chaos)


_TERM = re.compile(r"coordinator (\S+): leader at epoch (\d+)")


def _check_terms(chaos: Chaos) -> None:
    """Every leader epoch logged by a coordinator was held by one node only, and a node's
    terms only grow."""
    holders: dict[int, set[str]] = {}
    for member in chaos.sup.by_role("coordinator"):
        epochs = [int(m[2]) for m in _TERM.finditer(member.log.read_text(errors="replace"))]
        assert epochs == sorted(epochs), (member.name, epochs)
        for epoch in epochs:
            holders.setdefault(epoch, set()).add(member.name)
    shared = {epoch: names for epoch, names in holders.items() if len(names) > 1}
    assert not shared, f"two leaders under one epoch: {shared}"
    assert holders, "no coordinator logged a term"
    _check_one_leader_at_a_time(chaos)


_LEADS = re.compile(
    r"^(\S+ \S+) INFO chronoq: coordinator (\S+): leader at epoch (\d+)$"
    r"|^(\S+ \S+) WARNING chronoq: coordinator (\S+): not leader any more \(epoch (\d+)\)"
)


def _check_one_leader_at_a_time(chaos: Chaos) -> None:
    """From the coordinators' logs (a term starts at "leader at epoch", ends at "not leader
    any more") and the fault log (a SIGKILL ends it): never two nodes leading at once.
    Conservative: a start is logged after the lease was taken, an end after the node had
    already stopped acting."""
    events: list[tuple[float, int, str, str]] = []  # (time, 0 = end / 1 = start, node, what)
    for member in chaos.sup.by_role("coordinator"):
        for line in member.log.read_text(errors="replace").splitlines():
            found = _LEADS.match(line)
            if found is None:
                continue
            stamp, node, epoch = found[1] or found[4], found[2] or found[5], found[3] or found[6]
            when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time
            leads = found[1] is not None
            events.append((when, int(leads), node, f"{'leads' if leads else 'ends'} {epoch}"))
    for fault in chaos.sup.faults:
        if fault.role == "coordinator" and fault.action in ("SIGKILL", "SIGTERM"):
            events.append((fault.at, 0, fault.target, fault.action))
    assert sum(e[1] for e in events) >= 1, "no term found in the coordinators' logs"
    acting: dict[str, str] = {}
    for _, start, node, what in sorted(events):
        if start:
            acting[node] = what
            assert len(acting) == 1, f"two leaders acting at once: {acting}"
        else:
            acting.pop(node, None)


def _resumes(chaos: Chaos, within: float = 20.0) -> None:
    """Work resumes: the cluster is whole again and a new one-shot job runs."""
    chaos.sup.wait_cluster()
    job = chaos.api.submit(payload=chaos.ledger.probe(0.1))
    assert job, "the API refused a job"
    ran = wait_for(lambda: chaos.executions(job.job_id), within, interval=0.1)
    assert ran, f"a job submitted after etcd came back did not run within {within}s"


def _wait_member(chaos: Chaos, name: str) -> None:
    """Until the restarted ``name`` heartbeats in etcd (it started all its roles)."""
    up = wait_for(lambda: name in chaos.db.live_members("coordinator"), 30)
    assert up, f"{name} did not come back"


def _any_leader(servers: list[EtcdServer]) -> bool:
    return any(s.is_leader() for s in servers)


def _kill_etcd(chaos: Chaos, servers: list[EtcdServer], what: str) -> None:
    chaos.sup.note("etcd-kill", what)
    for server in servers:
        server.kill()


def _start_etcd(chaos: Chaos, servers: list[EtcdServer], what: str) -> None:
    for server in servers:
        server.start(timeout=30)
    chaos.sup.note("etcd-start", what)


def _kill_leading_coordinator(chaos: Chaos, times: int) -> None:
    """SIGKILL the coordinator holding the leader key ``times`` times; each time a new one
    (a higher epoch) within ``FAILOVER_LIMIT``; the killed one restarted."""
    failovers, epochs = [], []
    for _ in range(times):
        _load(chaos, 3)
        leader = wait_for(chaos.db.leader, 10)
        assert leader, "no leader"
        killed = chaos.sup.kill(leader[0])

        def replaced(old: tuple[str, int] = leader) -> tuple[str, int] | None:
            now = chaos.db.leader()
            return now if now and now[0] != old[0] and now[1] > old[1] else None

        new = wait_for(replaced, FAILOVER_LIMIT + 5, interval=0.02)
        assert new, f"no new leader after killing {leader[0]}"
        failovers.append(round(time.time() - killed.at, 2))
        epochs.append(new[1])
        chaos.sup.start(leader[0])
        _wait_member(chaos, leader[0])
    print(f"etcd: failover after SIGKILL of the leader (leader ttl {LEADER_TTL}s): "
          f"{failovers} s; epochs {epochs}")  # fmt: skip
    assert max(failovers) < FAILOVER_LIMIT, failovers
    assert epochs == sorted(set(epochs)), f"epochs must only grow: {epochs}"


def _restart_etcd(chaos: Chaos, servers: list[EtcdServer], what: str, times: int) -> None:
    """SIGKILL every one of ``servers`` at once, keep them down for ``OUTAGE``, restart them
    on their data dirs; work resumes, and the leader epoch never goes back."""
    epochs = []
    for _ in range(times):
        _load(chaos, 2)
        before = wait_for(chaos.db.leader, 10)
        assert before, "no leader"
        _kill_etcd(chaos, servers, what)
        hold(OUTAGE)
        _start_etcd(chaos, servers, what)
        assert wait_for(lambda: all(m.healthy() for m in servers), 30), f"{what} not healthy"
        after = wait_for(chaos.db.leader, 15)
        assert after and after[1] >= before[1], (before, after)
        epochs.append(after[1])
        _resumes(chaos)
    assert epochs == sorted(epochs), f"epochs must never go back: {epochs}"


def _kill_leading_member(chaos: Chaos, members: list[EtcdServer], times: int) -> None:
    """SIGKILL the etcd cluster's leader member; the others elect a new one and Chronoq
    goes on through them; the member is restarted and the cluster is whole again."""
    for _ in range(times):
        _load(chaos, 3)
        found = wait_for(lambda: [m for m in members if m.is_leader()], 15)
        assert found, "no etcd leader"
        (chief,) = found
        _kill_etcd(chaos, [chief], f"etcd {chief.member} (the etcd leader)")
        others = [m for m in members if m is not chief]
        assert wait_for(functools.partial(_any_leader, others), 15), "no new etcd leader"
        assert wait_for(chaos.db.leader, 15), "no chronoq leader on the surviving members"
        _resumes(chaos)  # while the killed member is still down
        _start_etcd(chaos, [chief], f"etcd {chief.member}")
        assert wait_for(lambda: all(m.healthy() for m in members), 15)


def _single(tmp_path: Path) -> list[EtcdServer]:
    return [EtcdServer(tmp_path / "etcd", fast=True)]


def _three(tmp_path: Path) -> list[EtcdServer]:
    return etcd_cluster(tmp_path / "etcd", 3, fast=True)


@pytest.mark.chaos(seed=81)
def test_etcd_leading_coordinator_sigkilled(
    request: pytest.FixtureRequest, pg: ChaosPostgres, pg_template: str, tmp_path: Path,
    etcd_marks: None,
) -> None:  # fmt: skip
    require_etcd()
    servers = _single(tmp_path)
    with etcd_chaos(request, pg, pg_template, tmp_path, servers) as chaos:
        chaos.cluster(_coordination(cluster_url(servers, PREFIX)),
                      api=1, coordinator=3, picker=2, worker=2)  # fmt: skip
        _start_load(chaos)
        _kill_leading_coordinator(chaos, 3)
        _check(chaos)


@pytest.mark.chaos(seed=82)
def test_etcd_sigkilled_and_restarted_on_its_data_dir(
    request: pytest.FixtureRequest, pg: ChaosPostgres, pg_template: str, tmp_path: Path,
    etcd_marks: None,
) -> None:  # fmt: skip
    require_etcd()
    servers = _single(tmp_path)
    with etcd_chaos(request, pg, pg_template, tmp_path, servers) as chaos:
        chaos.cluster(_coordination(cluster_url(servers, PREFIX)),
                      api=1, coordinator=2, picker=2, worker=2)  # fmt: skip
        _start_load(chaos)
        _restart_etcd(chaos, servers, "etcd", 2)
        _check(chaos)


@pytest.mark.chaos(seed=83)
def test_etcd_leading_member_sigkilled(
    request: pytest.FixtureRequest, pg: ChaosPostgres, pg_template: str, tmp_path: Path,
    etcd_marks: None,
) -> None:  # fmt: skip
    require_etcd()
    members = _three(tmp_path)
    with etcd_chaos(request, pg, pg_template, tmp_path, members) as chaos:
        chaos.cluster(_coordination(cluster_url(members, PREFIX) + "?timeout=1"),
                      api=1, coordinator=2, picker=2, worker=2)  # fmt: skip
        _start_load(chaos)
        _kill_leading_member(chaos, members, 2)
        _check(chaos)


@pytest.mark.chaos(seed=84)
def test_etcd_cluster_sigkilled_and_restarted(
    request: pytest.FixtureRequest, pg: ChaosPostgres, pg_template: str, tmp_path: Path,
    etcd_marks: None,
) -> None:  # fmt: skip
    require_etcd()
    members = _three(tmp_path)
    with etcd_chaos(request, pg, pg_template, tmp_path, members) as chaos:
        chaos.cluster(_coordination(cluster_url(members, PREFIX) + "?timeout=1"),
                      api=1, coordinator=2, picker=2, worker=2)  # fmt: skip
        _start_load(chaos)
        _restart_etcd(chaos, members, "etcd cluster", 1)
        _kill_leading_coordinator(chaos, 1)  # and a failover after the restart
        _check(chaos)
