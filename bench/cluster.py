"""A private PostgreSQL (fsync on) and Chronoq clusters of role processes over it.

For ``python -m bench --profile distributed``. One PostgreSQL server lives for
the whole profile, in a temp folder; every scenario run gets a fresh database
and a fresh cluster (``chronoq.runtime.cluster.Cluster``: one ``chronoq
<role>`` process per member, each in its own session). Nothing here restarts a
member that dies: the failover scenario kills members on purpose and restarts
them itself (``respawn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.cpu import _CLK_TCK, _children_map, _stat_fields
from bench.httpclient import Client, HttpError
from chronoq.runtime.cluster import Cluster, ClusterPlan, Member
from chronoq.runtime.pgserver import PrivatePostgres

ROLES = ("api", "coordinator", "picker", "worker")
POSTGRES = "postgres"
LEASE_NAME = "chronoq"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSize:
    api: int = 2
    pickers: int = 2
    workers: int = 3
    coordinators: int = 2

    def as_dict(self) -> dict[str, int]:
        return {
            "api": self.api,
            "pickers": self.pickers,
            "workers": self.workers,
            "coordinators": self.coordinators,
        }


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


# --- CPU of process trees -----------------------------------------------------------------


def trees_cpu(roots: Iterable[int]) -> dict[int, float]:
    """utime+stime (children reaped included) of each root's live process tree, seconds.

    One scan of /proc for all roots; a root that is gone is absent from the result.
    """
    children = _children_map()
    out: dict[int, float] = {}
    for root in roots:
        ticks = 0
        seen = False
        stack = [root]
        while stack:
            pid = stack.pop()
            fields = _stat_fields(pid)
            if fields is None:
                continue
            seen = True
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
            stack.extend(children.get(pid, ()))
        if seen:
            out[root] = ticks / _CLK_TCK
    return out


# --- PostgreSQL ---------------------------------------------------------------------------


class BenchPostgres:
    """``PrivatePostgres`` with the production durability settings (``fast=False``)."""

    def __init__(self, *, keep_data: bool = False) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="chronoq-bench-dist-"))
        # World-traversable, so that (as root) the postgres user keeps its data inside it.
        self.folder.chmod(0o755)
        self.server = PrivatePostgres(self.folder / "pg", fast=False)
        self.keep_data = keep_data
        self.statements = False
        self._databases = 0

    @property
    def pid(self) -> int | None:
        """The root of the server's process tree (``runuser`` as root, else the postmaster)."""
        return None if self.server.process is None else self.server.process.pid

    @property
    def admin_dsn(self) -> str:
        return self.server.dsn

    def start(self) -> None:
        self.server.start(timeout=60)

    async def enable_statements(self) -> None:
        """Load pg_stat_statements (a restart: it must be preloaded); for ``--pg-statements``."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        finally:
            await conn.close()
        self.server.stop()
        self.server.start(timeout=60)
        self.statements = True

    def destroy(self) -> None:
        """Stop the server; delete every file unless ``keep_data``."""
        try:
            self.server.destroy()
        finally:
            if not self.keep_data:
                shutil.rmtree(self.folder, ignore_errors=True)

    async def create_database(self) -> tuple[str, str]:
        """A fresh database: (name, dsn)."""
        self._databases += 1
        name = f"bench_{self._databases}_{os.getpid()}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        dsn = self.admin_dsn.rsplit("/", 1)[0] + "/" + name
        if self.statements:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            finally:
                await conn.close()
        return name, dsn

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()

    async def describe(self) -> dict[str, Any]:
        """Version and the settings that decide durability and memory."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            info: dict[str, Any] = {"version": await conn.fetchval("SELECT version()")}
            for name in (
                "fsync",
                "synchronous_commit",
                "full_page_writes",
                "wal_sync_method",
                "shared_buffers",
                "max_wal_size",
                "checkpoint_timeout",
                "max_connections",
                "shared_preload_libraries",
            ):
                info[name] = await conn.fetchval(f"SHOW {name}")
        finally:
            await conn.close()
        info["data_dir"] = str(self.server.data)
        return info


# --- the cluster --------------------------------------------------------------------------


def free_port_range(count: int, host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A base port such that ``base .. base+count-1`` are all free right now."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((host, 0))
            base: int = probe.getsockname()[1]
        if base + count > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports found")


def node_id(member: Member) -> str:
    return member.args[member.args.index("--node-id") + 1]


@dataclass(slots=True)
class ClusterEnv:
    """A running cluster: its members, its store, and a small pool for the bench's queries."""

    cluster: Cluster
    pg: BenchPostgres
    database: str
    dsn: str
    size: ClusterSize
    db: Any  # asyncpg.Pool
    host: str = "127.0.0.1"
    shard_count: int = 256
    member_ttl: float = 3.0
    ready_s: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def members(self) -> list[Member]:
        return self.cluster.members

    def of_role(self, role: str) -> list[Member]:
        return [m for m in self.members if m.role == role]

    @property
    def api_ports(self) -> list[int]:
        return [m.port for m in self.of_role("api") if m.port is not None]

    def member_by_node(self, node: str | None) -> Member | None:
        return next((m for m in self.members if node_id(m) == node), None)

    def role_cpu(self) -> dict[str, float]:
        """CPU seconds so far of every role's processes (summed) and of PostgreSQL's."""
        roots = [m.pid for m in self.members if m.pid is not None]
        pg_pid = self.pg.pid
        if pg_pid is not None:
            roots.append(pg_pid)
        cpu = trees_cpu(roots)
        out = {role: 0.0 for role in ROLES}
        for member in self.members:
            if member.pid is not None:
                out[member.role] += cpu.get(member.pid, 0.0)
        out[POSTGRES] = cpu.get(pg_pid, 0.0) if pg_pid is not None else 0.0
        return out

    def dead_members(self) -> list[Member]:
        return [m for m in self.members if m.process is not None and m.process.poll() is not None]

    def log_tail(self, member: Member, lines: int = 20) -> str:
        try:
            text = Path(member.log).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- killing and restarting members ---------------------------------------------------

    def kill(self, member: Member) -> float:
        """SIGKILL the member's process group; time.perf_counter() just before the signal."""
        assert member.process is not None
        at = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(member.process.pid, signal.SIGKILL)
        member.process.wait()
        self.events.append({"event": "SIGKILL", "member": member.name, "pid": member.pid})
        return at

    def respawn(self, member: Member) -> None:
        """Start the member's process again (same command line, same node id, same log)."""
        Path(member.log).parent.mkdir(parents=True, exist_ok=True)
        with open(member.log, "ab") as log:
            member.process = subprocess.Popen(
                member.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        member.pid = member.process.pid
        member.restarts += 1
        self.events.append({"event": "respawn", "member": member.name, "pid": member.pid})

    # -- readiness ------------------------------------------------------------------------

    async def settled(self) -> tuple[bool, str]:
        """Leader elected, every shard owned by a live picker and all pickers used, all
        workers and coordinators heartbeating. (ready?, what is missing)."""
        ttl = self.member_ttl
        async with self.db.acquire() as conn:
            leader = await conn.fetchval(
                "SELECT holder FROM leader_lease WHERE name = $1 AND holder IS NOT NULL"
                " AND expires_at > now()",
                LEASE_NAME,
            )
            live = await conn.fetch(
                "SELECT member_id, role FROM members"
                " WHERE heartbeat_at > now() - make_interval(secs => $1)",
                ttl,
            )
            owners = await conn.fetch(
                "SELECT owner, count(*) FROM shard_assignments GROUP BY owner"
            )
        live_by_role: dict[str, set[str]] = {}
        for row in live:
            live_by_role.setdefault(row[1], set()).add(row[0])
        pickers = {node_id(m) for m in self.of_role("picker") if m.process is not None}
        workers = {node_id(m) for m in self.of_role("worker")}
        coordinators = {node_id(m) for m in self.of_role("coordinator")}
        owned = {row[0]: row[1] for row in owners}
        missing = []
        if leader is None:
            missing.append("no leader")
        if not workers <= live_by_role.get("worker", set()):
            missing.append("workers not all live")
        if not coordinators <= live_by_role.get("coordinator", set()):
            missing.append("coordinators not all live")
        if set(owned) != pickers or sum(owned.values()) != self.shard_count:
            missing.append(f"shards {owned} not spread over {sorted(pickers)}")
        return not missing, "; ".join(missing)

    async def wait_settled(self, timeout_s: float) -> float:
        """Poll ``settled`` until true; the seconds waited."""
        started = time.perf_counter()
        deadline = started + timeout_s
        why = ""
        while time.perf_counter() < deadline:
            dead = self.dead_members()
            if dead:
                member = dead[0]
                code = member.process.returncode if member.process else None
                raise RuntimeError(
                    f"{member.name} exited with code {code}"
                    f"\n--- {member.log} ---\n{self.log_tail(member)}"
                )
            try:
                ok, why = await self.settled()
            except (OSError, asyncpg.PostgresError) as exc:  # schema not migrated yet
                ok, why = False, f"{type(exc).__name__}: {exc}"
            if ok:
                return time.perf_counter() - started
            await asyncio.sleep(0.1)
        raise RuntimeError(f"cluster not settled after {timeout_s:.0f}s: {why}")

    async def wait_http(self, timeout_s: float) -> None:
        deadline = time.perf_counter() + timeout_s
        for port in self.api_ports:
            client = Client(self.host, port)
            try:
                while True:
                    try:
                        if (await client.call("GET", "/health")).status == 200:
                            break
                    except (OSError, HttpError):
                        pass
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"api on port {port} not healthy after {timeout_s:.0f}s")
                    await asyncio.sleep(0.05)
            finally:
                await client.close()


@contextlib.asynccontextmanager
async def bench_cluster(
    pg: BenchPostgres,
    size: ClusterSize,
    extra: Sequence[str],
    *,
    keep_data: bool = False,
    ready_timeout_s: float = 120.0,
) -> AsyncIterator[ClusterEnv]:
    """A fresh database and a settled cluster over it; everything stopped and dropped after."""
    database, dsn = await pg.create_database()
    folder = pg.folder / "clusters" / database
    plan = ClusterPlan(
        folder=folder,
        store=dsn,
        api=size.api,
        pickers=size.pickers,
        workers=size.workers,
        coordinators=size.coordinators,
        base_port=free_port_range(size.api),
        extra=list(extra),
    )
    cluster = Cluster(plan)
    db = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    failed = False
    try:
        started = time.perf_counter()
        cluster.start()
        env = ClusterEnv(
            cluster=cluster,
            pg=pg,
            database=database,
            dsn=dsn,
            size=size,
            db=db,
            shard_count=int(option_value(extra, "shard-count") or 256),
            member_ttl=float(option_value(extra, "member-ttl") or 3.0),
        )
        await env.wait_http(ready_timeout_s)
        await env.wait_settled(ready_timeout_s)
        env.ready_s = time.perf_counter() - started
        yield env
    except Exception:
        failed = True  # keep the logs of a run that went wrong (not of a cancelled one)
        raise
    finally:
        # Synchronous on purpose: this must run to the end even when the task is cancelled.
        cluster.stop()
        await db.close()
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await pg.drop_database(database)
        if failed:  # the folder goes with the PostgreSQL folder: keep the logs elsewhere
            kept = Path(tempfile.gettempdir()) / f"chronoq-bench-{database}-logs"
            with contextlib.suppress(OSError):
                shutil.copytree(folder / "logs", kept, dirs_exist_ok=True)
                print(f"[bench] cluster logs kept in {kept}", file=sys.stderr, flush=True)
        if not keep_data:
            shutil.rmtree(folder, ignore_errors=True)
