"""A cluster of role processes as a ``bench.target.Target`` (the distributed profile).

The load is spread over the api processes; completion, run times and engine
counters are read from the store with asyncpg (the bench's own small pool), not
over HTTP; CPU per role and of PostgreSQL's whole process tree from ``/proc``.
Nothing here restarts a member that dies: the failover scenario kills members on
purpose and restarts them itself (``kill``, ``respawn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.cpu import CpuSample, trees_cpu
from bench.model import ScenarioRun, Settings
from bench.pgwork import add_statement_metrics, pg_work
from bench.postgres import BenchPostgres
from bench.server import healthy
from bench.target import Completion, CounterPair, RunTimes
from chronoq.runtime.cluster import Cluster, Member
from tests.support.processes import HOST, log_tail, signal_group, spawn
from tests.support.waiting import poll

ROLES = ("api", "coordinator", "picker", "worker", "writer")
POSTGRES = "postgres"
LEASE_NAME = "chronoq"

# --- store queries (the bench's own connections; the cluster never sees them) ------------

OUTSTANDING = (
    "SELECT (SELECT count(*) FROM jobs WHERE next_fire_at <= now() + interval '1 second'),"
    " (SELECT count(*) FROM job_runs WHERE status = 'QUEUED'),"
    " (SELECT count(*) FROM job_runs WHERE status = 'RUNNING')"
)
"""Work not finished yet (due jobs, QUEUED and RUNNING runs), from the due index and the
partial indexes: for the timeline. Its cost grows with the work outstanding (tens of ms
with 50,000 jobs due), so it is sampled at most once a second."""

BUSY = (
    "SELECT EXISTS (SELECT 1 FROM jobs WHERE next_fire_at <= now() + interval '1 second')"
    " OR EXISTS (SELECT 1 FROM job_runs WHERE status = 'QUEUED')"
    " OR EXISTS (SELECT 1 FROM job_runs WHERE status = 'RUNNING')"
)
"""Whether any work is outstanding: the completion poll, cheap (stops at the first row).
One snapshot, and each step of a job (fire, lease, completion) is one transaction, so
false means every job committed before the query has finished."""

COMPLETED = "SELECT count(*) FROM job_runs WHERE status = 'COMPLETED'"
"""The definitive completion count (a scan of job_runs): run once BUSY is false."""

USER_COMPLETED_JOBS = "SELECT count(*) FROM jobs WHERE user_id = $1 AND status = 'COMPLETED'"

FIRST_RUNS = (
    "SELECT job_id::text, extract(epoch FROM scheduled_for)::float8,"
    " extract(epoch FROM triggered_at)::float8, extract(epoch FROM started_at)::float8,"
    " extract(epoch FROM completed_at)::float8, worker_id"
    " FROM job_runs WHERE user_id = $1 AND attempt = 1"
)

PG_COUNTERS = (
    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, txid_current(),"
    " (SELECT wal_sync FROM pg_stat_wal), (SELECT wal_fpi FROM pg_stat_wal),"
    " (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())"
)
"""WAL position (bytes), the transaction-id counter (write transactions of the whole
server: txid_current itself takes one), and the cumulative statistics (flushed by each
backend at most once a second, so only approximate over a short window)."""

PG_STATEMENTS = (
    "SELECT calls, total_exec_time, total_plan_time, rows, shared_blks_hit, shared_blks_read,"
    " shared_blks_dirtied, wal_bytes, left(regexp_replace(query, '\\s+', ' ', 'g'), 160)"
    " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
    " WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT 20"
)
"""With ``--pg-statements``: where PostgreSQL's time went, per statement (top 20)."""

PG_ACTIVITY = (
    "SELECT coalesce(wait_event_type || ':' || wait_event, 'on CPU'),"
    " left(regexp_replace(query, '\\s+', ' ', 'g'), 70)"
    " FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
    " AND pid <> pg_backend_pid()"
)


def option_value(extra: Sequence[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in a list of CLI arguments (last wins)."""
    flag = f"--{name}"
    found = None
    for index, arg in enumerate(extra):
        if arg == flag and index + 1 < len(extra):
            found = extra[index + 1]
        elif arg.startswith(flag + "="):
            found = arg.split("=", 1)[1]
    return found


def node_id(member: Member) -> str:
    return member.args[member.args.index("--node-id") + 1]


class ActivitySampler:
    """Samples PostgreSQL's active backends of the cluster's database (a poor man's profile)."""

    def __init__(self, db: Any, interval_s: float) -> None:
        self.db = db
        self.interval_s = interval_s
        self.samples = 0
        self.counts: dict[tuple[str, str], int] = {}

    async def run(self) -> None:
        async with self.db.acquire() as conn:
            while True:
                for wait, query in await conn.fetch(PG_ACTIVITY):
                    self.counts[(wait, query)] = self.counts.get((wait, query), 0) + 1
                self.samples += 1
                await asyncio.sleep(self.interval_s)

    def summary(self) -> dict[str, Any]:
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])[:15]
        top = [
            {"wait": wait, "query": query, "share_of_samples": count / self.samples}
            for (wait, query), count in ranked
        ]
        active = sum(self.counts.values()) / self.samples if self.samples else None
        return {"samples": self.samples, "avg_active_backends": active, "top": top}


@dataclass(slots=True)
class ClusterTarget:
    """A running cluster: its members, its store, and a small pool for the bench's queries."""

    cluster: Cluster
    pg: BenchPostgres
    database: str
    settings: Settings
    db: Any  # asyncpg.Pool
    host: str = HOST
    shard_count: int = 256
    member_ttl: float = 3.0
    ready_s: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "distributed"
    server_name: str = "cluster"
    throughput_goals: bool = False
    on_postgres: bool = True
    timeline_min_interval_s: float = 1.0
    extras: dict[str, Any] = field(default_factory=dict)
    """Set-up facts (warm-up, idle CPU) added to every run by ``annotate``."""

    @property
    def members(self) -> list[Member]:
        return self.cluster.members

    @property
    def workers(self) -> int:
        return len(self.of_role("worker"))

    def of_role(self, role: str) -> list[Member]:
        return [m for m in self.members if m.role == role]

    @property
    def api_ports(self) -> list[int]:
        return [m.port for m in self.of_role("api") if m.port is not None]

    def member_by_node(self, node: str | None) -> Member | None:
        return next((m for m in self.members if node_id(m) == node), None)

    # -- measuring ------------------------------------------------------------------------

    def cpu(self) -> CpuSample:
        """CPU seconds so far of every role's processes (summed) and of PostgreSQL's."""
        roots = [m.pid for m in self.members if m.pid is not None]
        pg_pid = self.pg.pid
        if pg_pid is not None:
            roots.append(pg_pid)
        servers = {
            name: server.process.pid
            for name, server in self.cluster.stack.servers.items()
            if server.process is not None
        }  # the seed-shaped backends (cluster up --with), each its own part
        roots += servers.values()
        cpu = {pid: user + system for pid, (user, system) in trees_cpu(roots).items()}
        parts = {role: 0.0 for role in ROLES}
        for member in self.members:
            if member.pid is not None:
                parts[member.role] += cpu.get(member.pid, 0.0)
        parts[POSTGRES] = cpu.get(pg_pid, 0.0) if pg_pid is not None else 0.0
        for name, pid in servers.items():
            parts[name] = cpu.get(pid, 0.0)
        return CpuSample(parts)

    async def completed(self) -> float:
        return float(await self.db.fetchval(COMPLETED))

    async def wait_completed(
        self, total: float, user: str, *, deadline: float, interval_s: float
    ) -> Completion:
        polls = 0
        while True:
            polls += 1
            if not await self.db.fetchval(BUSY) and await self.db.fetchval(COMPLETED) >= total:
                return Completion(time.perf_counter(), polls)
            if time.perf_counter() > deadline:
                left = tuple(await self.db.fetchrow(OUTSTANDING))
                raise TimeoutError(
                    f"work outstanding at the deadline (due, queued, running): {left}"
                )
            await asyncio.sleep(interval_s)

    async def counters(self) -> dict[str, int]:
        row = await self.db.fetchrow(PG_COUNTERS)
        keys = ("wal_bytes", "txid", "wal_sync", "wal_fpi", "xact_commit")
        return {key: int(value or 0) for key, value in zip(keys, row, strict=True)}

    @contextlib.asynccontextmanager
    async def measuring(self, run: ScenarioRun, jobs: int) -> AsyncIterator[None]:
        """``--pg-statements``: reset before, top statements after; ``--pg-sample``: sample
        the active backends meanwhile."""
        s = self.settings
        if s.pg_statements:
            await self.db.execute("SELECT pg_stat_statements_reset()")
        activity = ActivitySampler(self.db, s.pg_sample_s) if s.pg_sample_s > 0 else None
        task = asyncio.create_task(activity.run()) if activity is not None else None
        try:
            async with pg_work(self.db, run):  # statements, buffers per job
                yield
            if s.pg_statements:
                run.raw["pg_statements"] = await self._statements(jobs)
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if activity is not None:
            run.raw["pg_activity"] = activity.summary()

    async def _statements(self, jobs: int) -> list[dict[str, Any]]:
        keys = ("calls", "exec_ms", "plan_ms", "rows", "blks_hit", "blks_read", "blks_dirtied")
        out = []
        for row in await self.db.fetch(PG_STATEMENTS):
            item: dict[str, Any] = dict(zip(keys, row[:7], strict=True))
            item["wal_bytes"] = int(row[7] or 0)
            item["exec_us_per_job"] = row[1] * 1000 / jobs
            item["query"] = row[8]
            out.append(item)
        return out

    async def timeline_point(self, baseline: float) -> dict[str, Any]:
        due, queued, running = await self.db.fetchrow(OUTSTANDING)
        return {"due": due, "queued": queued, "running": running}

    async def first_runs(self, user: str, job_ids: Sequence[str]) -> dict[str, RunTimes]:
        rows = await self.db.fetch(FIRST_RUNS, user)
        return {r[0]: RunTimes(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    async def completed_jobs(self, user: str) -> int:
        return int(await self.db.fetchval(USER_COMPLETED_JOBS, user))

    async def fire_lag_histogram(self) -> dict[str, Any] | None:
        return None  # pickers and workers export it only with --metrics-port

    def resource_metrics(
        self,
        run: ScenarioRun,
        jobs: int,
        cpu: dict[str, Any],
        counters: CounterPair,
    ) -> None:
        cpu_s, cores = cpu["cpu_s"], cpu["cores"]
        parts = (*ROLES, POSTGRES, *self.cluster.stack.servers)  # + cluster up --with servers
        for role in parts:
            run.add(f"CPU per job: {role}", cpu_s[role] / jobs * 1000, "ms")
        run.add("CPU per job: all roles + PostgreSQL", sum(cpu_s.values()) / jobs * 1000, "ms")
        run.add("CPU per job: load generator", cpu["client_cpu_s"] / jobs * 1000, "ms")
        for role in parts:
            run.add(f"cores: {role}", cores.get(role), "cores")
        run.add("cores: load generator", cpu["client_cores"], "cores")
        run.add("machine busy (avg cores)", cpu["machine_busy_cores"], "cores")
        run.add("other processes (avg cores)", cpu["other_cores"], "cores")
        before, after = counters
        delta = {k: after[k] - before[k] for k in before}
        delta["write_transactions"] = delta.pop("txid") - 1  # txid_current() takes one
        run.raw["postgres_counters"] = delta
        run.raw["api_processes"] = len(self.api_ports)
        run.add("PostgreSQL WAL bytes per job", delta["wal_bytes"] / jobs, "B")
        run.add("PostgreSQL write transactions per job", delta["write_transactions"] / jobs, "tx")
        add_statement_metrics(run, jobs)

    def annotate(self, run: ScenarioRun) -> None:
        run.raw["cluster_ready_s"] = self.ready_s
        run.raw.update(self.extras)
        idle = self.extras.get("idle_cpu")
        if idle is not None:
            run.add("idle cluster CPU (roles + PostgreSQL)", idle["parts_cores"], "cores")

    # -- killing and restarting members ---------------------------------------------------

    def kill(self, member: Member) -> float:
        """SIGKILL the member's process group; time.perf_counter() just before the signal."""
        assert member.process is not None
        at = time.perf_counter()
        signal_group(member.process.pid, signal.SIGKILL)
        member.process.wait()
        self.events.append({"event": "SIGKILL", "member": member.name, "pid": member.pid})
        return at

    def respawn(self, member: Member) -> None:
        """Start the member's process again (same command line, same node id, same log)."""
        member.process = spawn(member.args, Path(member.log))
        member.pid = member.process.pid
        member.restarts += 1
        self.events.append({"event": "respawn", "member": member.name, "pid": member.pid})

    # -- readiness ------------------------------------------------------------------------

    async def settled(self) -> tuple[bool, str]:
        """Leader elected, every shard owned by a live picker and all pickers used, all
        workers and coordinators heartbeating. (ready?, what is missing)."""
        coordination = self.cluster.stack.coordination_url()
        if coordination:  # etcd: read it through the Coordination port
            return await self._settled_via(coordination)
        async with self.db.acquire() as conn:
            leader = await conn.fetchval(
                "SELECT holder FROM leader_lease WHERE name = $1 AND holder IS NOT NULL"
                " AND expires_at > now()",
                LEASE_NAME,
            )
            live = await conn.fetch(
                "SELECT member_id, role FROM members"
                " WHERE heartbeat_at > now() - make_interval(secs => $1)",
                self.member_ttl,
            )
            owners = await conn.fetch(
                "SELECT owner, count(*) FROM shard_assignments GROUP BY owner"
            )
        return self._missing(leader, [(r[0], r[1]) for r in live], {r[0]: r[1] for r in owners})

    async def _settled_via(self, coordination: str) -> tuple[bool, str]:
        from chronoq.cli.cluster_status import gather

        snap = await gather(self.cluster.store, coordination)
        live = [
            (m.member_id, m.role)
            for m in snap.members
            if m.heartbeat_at is not None
            and (snap.now - m.heartbeat_at).total_seconds() < self.member_ttl
        ]
        return self._missing(snap.leader.holder if snap.leader else None, live, snap.shards)

    def _missing(
        self, leader: str | None, live: list[tuple[str, str]], owned: dict[str, int]
    ) -> tuple[bool, str]:
        live_by_role: dict[str, set[str]] = {}
        for member_id, role in live:
            live_by_role.setdefault(role, set()).add(member_id)
        pickers = {node_id(m) for m in self.of_role("picker") if m.process is not None}
        missing = []
        if leader is None:
            missing.append("no leader")
        for role in ("worker", "coordinator"):
            if not {node_id(m) for m in self.of_role(role)} <= live_by_role.get(role, set()):
                missing.append(f"{role}s not all live")
        if set(owned) != pickers or sum(owned.values()) != self.shard_count:
            missing.append(f"shards {owned} not spread over {sorted(pickers)}")
        return not missing, "; ".join(missing)

    async def wait_settled(self, timeout_s: float) -> float:
        """Poll ``settled`` until true; the seconds waited."""
        started = time.perf_counter()
        why = [""]

        async def check() -> bool:
            dead = [
                m for m in self.members if m.process is not None and m.process.poll() is not None
            ]
            if dead:
                member = dead[0]
                code = member.process.returncode if member.process else None
                raise RuntimeError(
                    f"{member.name} exited with code {code}\n{log_tail(Path(member.log), 20)}"
                )
            try:
                ok, why[0] = await self.settled()
            except (OSError, asyncpg.PostgresError) as exc:  # schema not migrated yet
                ok, why[0] = False, f"{type(exc).__name__}: {exc}"
            return ok

        if not await poll(check, timeout_s, interval=0.1):
            raise RuntimeError(f"cluster not settled after {timeout_s:.0f}s: {why[0]}")
        return time.perf_counter() - started

    async def wait_http(self, timeout_s: float) -> None:
        deadline = time.perf_counter() + timeout_s
        for port in self.api_ports:
            if not await healthy(self.host, port, max(0.0, deadline - time.perf_counter())):
                raise RuntimeError(f"api on port {port} not healthy after {timeout_s:.0f}s")
