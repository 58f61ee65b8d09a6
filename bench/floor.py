"""The floor: the smallest correct PostgreSQL queue (``bench.floor_server``), measured in
the same bench run, on the same private PostgreSQL, with the same load as Chronoq's
``batch`` scenario; and the Chronoq / floor ratios.

``--scenarios batch,floor`` runs ``batch`` (Chronoq) and ``floor`` alternately (batch 1,
floor 1, batch 2, …: both meet the same machine load), each on a fresh database of the
profile's PostgreSQL, warmed up the same way (``--warmup-jobs``), and adds a section
``batch / floor`` with one ratio per pair and their median. The floor's processes mirror
the profile: embedded (``--pg-store``) one process (HTTP front + one worker loop), like
``chronoq up``; distributed ``--api`` front processes and ``--workers`` worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import api, pgwork
from bench.cluster import PG_COUNTERS
from bench.cpu import CpuSample, cpu_between, trees_cpu
from bench.measure import host_header, throughput
from bench.model import Goal, ScenarioRun, Settings
from bench.postgres import BenchPostgres
from bench.server import healthy
from bench.target import Completion, CounterPair, RunTimes, new_user
from tests.support.processes import HOST, free_port, log_tail, spawn, stop_group

FLOOR = "floor"
BATCH = "batch"
FLOORS = {FLOOR: "locked", "floor-lease": "update"}
"""The floor's variants (scenario name: ``--claim-mode``): ``floor`` claims with row locks
held while the jobs run (one INSERT + one UPDATE per job); ``floor-lease`` commits the
claim as ``status = 'running'`` first (one INSERT + two UPDATEs per job)."""


def wants_floor(names: Sequence[str]) -> bool:
    return any(name in FLOORS for name in names)


BUSY = (
    "SELECT EXISTS (SELECT 1 FROM floor_jobs WHERE status = 'queued')"
    " OR EXISTS (SELECT 1 FROM floor_jobs WHERE status = 'running')"
)
DONE = "SELECT count(*) FROM floor_jobs WHERE status = 'done'"
USER_DONE = "SELECT count(*) FROM floor_jobs WHERE status = 'done' AND user_id = $1"
QUEUED = "SELECT count(*) FROM floor_jobs WHERE status <> 'done'"


@dataclass(slots=True)
class FloorProcess:
    role: str  # "server" (front + worker), "front" or "worker"
    argv: list[str]
    log: Path
    port: int | None
    process: Any = None


@dataclass(slots=True)
class FloorTarget:
    """The floor's processes over their own database: a ``bench.target.Target``."""

    processes: list[FloorProcess]
    pg: BenchPostgres
    db: Any  # asyncpg.Pool, as bench_observer
    settings: Settings
    variant: str = FLOOR
    host: str = HOST
    kind: str = FLOOR
    server_name: str = FLOOR
    throughput_goals: bool = False
    on_postgres: bool = True
    timeline_min_interval_s: float = 1.0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.role for p in self.processes))

    @property
    def workers(self) -> int:
        return sum(p.role in ("server", "worker") for p in self.processes)

    @property
    def api_ports(self) -> list[int]:
        return [p.port for p in self.processes if p.port]

    def cpu(self) -> CpuSample:
        roots = [p.process.pid for p in self.processes if p.process is not None]
        if self.pg.pid is not None:
            roots.append(self.pg.pid)
        cpu = {pid: user + system for pid, (user, system) in trees_cpu(roots).items()}
        parts = {role: 0.0 for role in self.roles}
        for p in self.processes:
            if p.process is not None:
                parts[p.role] += cpu.get(p.process.pid, 0.0)
        parts["postgres"] = cpu.get(self.pg.pid, 0.0) if self.pg.pid is not None else 0.0
        return CpuSample(parts)

    async def completed(self) -> float:
        return float(await self.db.fetchval(DONE))

    async def wait_completed(
        self, total: float, user: str, *, deadline: float, interval_s: float
    ) -> Completion:
        polls = 0
        while True:
            polls += 1
            if not await self.db.fetchval(BUSY) and await self.db.fetchval(DONE) >= total:
                return Completion(time.perf_counter(), polls)
            if time.perf_counter() > deadline:
                raise TimeoutError(f"floor: {await self.db.fetchval(QUEUED)} jobs not done")
            await asyncio.sleep(interval_s)

    async def counters(self) -> dict[str, int]:
        row = await self.db.fetchrow(PG_COUNTERS)
        keys = ("wal_bytes", "txid", "wal_sync", "wal_fpi", "xact_commit")
        return {key: int(value or 0) for key, value in zip(keys, row, strict=True)}

    @contextlib.asynccontextmanager
    async def measuring(self, run: ScenarioRun, jobs: int) -> AsyncIterator[None]:
        async with pgwork.pg_work(self.db, run):
            yield

    async def timeline_point(self, baseline: float) -> dict[str, Any]:
        return {"not_done": await self.db.fetchval(QUEUED)}

    async def first_runs(self, user: str, job_ids: Sequence[str]) -> dict[str, RunTimes]:
        return {}

    async def completed_jobs(self, user: str) -> int:
        return int(await self.db.fetchval(USER_DONE, user))

    async def fire_lag_histogram(self) -> dict[str, Any] | None:
        return None

    def resource_metrics(
        self, run: ScenarioRun, jobs: int, cpu: dict[str, Any], counters: CounterPair
    ) -> None:
        pgwork.add_cpu_metrics(run, jobs, cpu, (*self.roles, "postgres"))
        delta = pgwork.counter_deltas(counters)
        run.raw["postgres_counters"] = delta
        pgwork.add_work_metrics(run, jobs, delta)

    def annotate(self, run: ScenarioRun) -> None:
        run.raw.update(self.extras, floor_processes=[(p.role, p.argv) for p in self.processes])
        idle = self.extras.get("idle_cpu")
        if idle is not None:
            run.add("idle floor CPU (processes + PostgreSQL)", idle["parts_cores"], "cores")


def _plan(dsn: str, folder: Path, fronts: int, workers: int, mode: str) -> list[FloorProcess]:
    base = [sys.executable, "-m", "bench.floor_server", "--dsn", dsn, "--claim-mode", mode]
    if fronts == 0:  # embedded: one process, like chronoq up
        port = free_port(HOST)
        argv = [*base, "--port", str(port), "--workers", str(max(1, workers))]
        return [FloorProcess("server", argv, folder / "server.log", port)]
    plan = []
    for i in range(fronts):
        port = free_port(HOST)
        argv = [*base, "--port", str(port)]
        plan.append(FloorProcess("front", argv, folder / f"front-{i}.log", port))
    for i in range(workers):
        plan.append(
            FloorProcess("worker", [*base, "--workers", "1"], folder / f"worker-{i}.log", None)
        )
    return plan


@contextlib.asynccontextmanager
async def floor_target(
    pg: BenchPostgres, settings: Settings, *, fronts: int, workers: int, variant: str = FLOOR
) -> AsyncIterator[FloorTarget]:
    """A fresh database with the floor's processes over it, warmed up (``--warmup-jobs``,
    then ``ANALYZE``) and left idle like a cluster; everything stopped and dropped after."""
    database, dsn = await pg.create_database()
    folder = pg.folder / "floors" / database
    folder.mkdir(parents=True, exist_ok=True)
    db = await pgwork.observer_pool(dsn)
    plan = _plan(dsn, folder, fronts, workers, FLOORS[variant])
    target = FloorTarget(plan, pg, db, settings, variant)
    try:
        started = time.perf_counter()
        first, *rest = target.processes  # the first creates the schema: no start-up race
        first.process = spawn(first.argv, first.log)
        await _ready(target, [first])
        for p in rest:
            p.process = spawn(p.argv, p.log)
        await _ready(target, rest)
        target.extras["ready_s"] = time.perf_counter() - started
        warm = await pgwork.warm_up(target, db, settings, "ANALYZE floor_jobs")
        before = target.cpu()
        await asyncio.sleep(settings.idle_s)
        target.extras.update(warmup=warm, idle_cpu=cpu_between(before, target.cpu()))
        yield target
    finally:
        for p in target.processes:
            if p.process is not None:
                stop_group(p.process, 10.0)
        await db.close()
        with contextlib.suppress(Exception):
            await pg.drop_database(database)
        if not settings.keep_data:
            shutil.rmtree(folder, ignore_errors=True)


async def _ready(target: FloorTarget, processes: Sequence[FloorProcess]) -> None:
    deadline = time.perf_counter() + 60
    for p in processes:
        while True:
            if p.process.poll() is not None:
                raise RuntimeError(f"floor {p.role} exited\n{log_tail(p.log, 20)}")
            if p.port and await healthy(target.host, p.port, 0.5):
                break
            if not p.port and "floor ready" in p.log.read_text(errors="replace"):
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"floor {p.role} not ready\n{log_tail(p.log, 20)}")
            await asyncio.sleep(0.1)


# --- the scenario ------------------------------------------------------------------------


async def floor(target: FloorTarget, s: Settings) -> ScenarioRun:
    """``batch``'s load (same N, batch size, connections, bytes) against the floor."""
    name = target.variant
    run = ScenarioRun(name, raw={"user_id": new_user(name), "batch_size": s.batch_size})
    requests = api.batch_requests(
        host_header(target), run.raw["user_id"], s.batch_jobs, s.batch_size
    )
    await throughput(
        target, s, run, jobs=s.batch_jobs, clients=s.batch_clients, requests=requests, goal=None
    )
    return run


def run_order(
    names: Sequence[str], repeats: Callable[[str], int]
) -> list[tuple[str, list[int], int]]:
    """(scenario, run indices, repeats) in run order: ``batch`` and the floors alternate one
    run at a time when both are asked for (at the place of the first of them); every other
    scenario runs all its repeats in a row, as listed."""
    group = [n for n in names if n == BATCH or n in FLOORS]
    paired = BATCH in group and len(group) > 1
    order: list[tuple[str, list[int], int]] = []
    for name in names:
        if paired and name in group:
            if name == group[0]:
                count = max(repeats(n) for n in group)
                for index in range(count):
                    order += [(n, [index], count) for n in group]
            continue
        order.append((name, list(range(repeats(name))), repeats(name)))
    return order


# --- Chronoq / floor ratios ---------------------------------------------------------------

RATIOS: tuple[tuple[str, str, Goal | None], ...] = (
    ("end-to-end throughput", "end-to-end jobs/s: Chronoq / floor", Goal(">=", 0.6)),
    ("CPU per job: postgres", "PostgreSQL CPU per job: Chronoq / floor", Goal("<=", 3)),
    ("CPU per job: all + PostgreSQL", "all CPU per job: Chronoq / floor", None),
    ("PostgreSQL statements per job", "statements per job: Chronoq / floor", None),
    ("PostgreSQL WAL bytes per job", "WAL bytes per job: Chronoq / floor", None),
    ("PostgreSQL buffers dirtied per job", "buffers dirtied per job: Chronoq / floor", None),
    ("PostgreSQL buffers written per job", "buffers written per job: Chronoq / floor", None),
    ("PostgreSQL write transactions per job", "write transactions per job: Chronoq / floor", None),
)
ALIASES = {"CPU per job: all + PostgreSQL": ("CPU per job: all roles + PostgreSQL",)}


def _value(run: ScenarioRun, name: str) -> float | None:
    for candidate in (name, *ALIASES.get(name, ())):
        for metric in run.metrics:
            if metric.name == candidate:
                return metric.value
    return None


def ratios(collected: dict[str, list[ScenarioRun]]) -> dict[str, list[ScenarioRun]]:
    """Per floor variant, ``batch / <variant>``: one run of ratios per pair (the i-th batch
    run with the i-th floor run)."""
    out: dict[str, list[ScenarioRun]] = {}
    for variant, tag in ((v, t) for v in FLOORS for t in ("", "[fresh]")):
        pairs = zip(collected.get(BATCH + tag, []), collected.get(variant + tag, []), strict=False)
        for chronoq, floor_run in pairs:
            if chronoq.error or floor_run.error:
                continue
            run = ScenarioRun(f"{BATCH}{tag} / {variant}{tag}")
            for metric, label, goal in RATIOS:
                a, b = _value(chronoq, metric), _value(floor_run, metric)
                run.add(label, a / b if a is not None and b else None, "x", goal)
            out.setdefault(run.scenario, []).append(run)
    return out
