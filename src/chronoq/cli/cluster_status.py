"""Gathering and printing ``chronoq cluster status``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from chronoq.ports.coordination import Leadership, Member
from chronoq.ports.jobs import Backlog
from chronoq.runtime.config import Settings
from chronoq.runtime.stack import health_of
from chronoq.runtime.wiring import postgres_backends

_MEMBER_TTL = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    now: datetime
    leader: Leadership | None
    members: list[Member]
    shards: dict[str, int]
    assignment_epoch: int
    backlog: Backlog


async def gather(url: str, coordination: str = "") -> Snapshot:
    """The cluster as its store and its coordination (PostgreSQL's, or etcd) see it."""
    backends = postgres_backends(Settings(store=url, coordination=coordination))
    await backends.jobs.start()
    await backends.coordination.start()
    try:
        now = datetime.now(UTC)
        assignments = await backends.coordination.assignments()
        return Snapshot(
            now=now,
            leader=await backends.coordination.leader(),
            members=await backends.coordination.members(ttl=_MEMBER_TTL * 10),
            shards=dict(Counter(owner for owner, _epoch in assignments.values())),
            assignment_epoch=max((e for _o, e in assignments.values()), default=0),
            backlog=await backends.jobs.backlog(now),
        )
    finally:
        await backends.coordination.close()
        await backends.jobs.close()


def render(snap: Snapshot, state: dict[str, object] | None) -> None:
    console = Console()
    if snap.leader is None:
        console.print("[red]no leader[/red]")
    else:
        console.print(f"leader: [bold]{snap.leader.holder}[/bold] (epoch {snap.leader.epoch})")
    table = Table("member", "role", "host", "pid", "heartbeat age", "shards")
    for m in sorted(snap.members, key=lambda m: (m.role, m.member_id)):
        age = (snap.now - m.heartbeat_at).total_seconds() if m.heartbeat_at else float("nan")
        colour = "green" if age < _MEMBER_TTL else "red"
        table.add_row(
            m.member_id, m.role, m.host, str(m.pid), f"[{colour}]{age:.1f}s[/{colour}]",
            str(snap.shards.get(m.member_id, "")) if m.role == "picker" else "",
        )  # fmt: skip
    console.print(table)
    console.print(f"shards assigned: {sum(snap.shards.values())} (epoch {snap.assignment_epoch})")
    b = snap.backlog
    lag = (snap.now - b.oldest_due).total_seconds() if b.oldest_due else 0.0
    console.print(
        f"due fires unclaimed: {b.due} (oldest {lag:.2f}s late); "
        f"runs waiting: {b.queued}; running: {b.running}"
    )
    if state:
        console.print(f"cluster state from {state.get('store')}")
        render_backends(console, state)


def render_backends(console: Console, state: dict[str, object]) -> None:
    """One line per backend ``cluster up --with`` started: reachable and healthy, or not."""
    backends = state.get("backends")
    if not isinstance(backends, dict) or not backends:
        return
    table = Table("backend", "address", "health")
    for name, (ok, detail) in health_of(backends.items()).items():
        colour = "green" if ok else "red"
        table.add_row(name, str(backends[name]), f"[{colour}]{detail}[/{colour}]")
    console.print(table)
