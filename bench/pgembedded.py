"""The embedded profile over PostgreSQL (``--pg-store``): ``chronoq up --store
postgresql://…`` on the distributed profile's private PostgreSQL (fsync on).

Every scenario run gets a fresh database, a fresh ``chronoq up`` on it, the same
warm-up as a cluster (``--warmup-jobs``, then ``ANALYZE``) and an idle moment. The
target is the embedded one (completion over ``/metrics`` and the API) plus
PostgreSQL: its process tree's CPU, WAL, transactions and statements per job
(``bench.pgwork``). The ``floor`` scenario gets the floor in one process instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bench import pgwork
from bench.cluster import PG_COUNTERS
from bench.cpu import CpuSample, cpu_between, trees_cpu
from bench.embedded import ServerTarget
from bench.floor import FLOORS, FloorTarget, floor_target
from bench.model import ScenarioRun, Settings
from bench.postgres import BenchPostgres, session_postgres
from bench.server import chronoq_server
from bench.target import CounterPair, Scenario


@dataclass(slots=True)
class PgServerTarget(ServerTarget):
    """``chronoq up --store <fresh database>``: the server's figures and PostgreSQL's."""

    pg: BenchPostgres | None = None
    db: Any = None  # asyncpg.Pool as bench_observer
    throughput_goals: bool = False  # the embedded goals are SQLite's (docs/benchmarks.md)
    on_postgres: bool = True
    extras: dict[str, Any] = field(default_factory=dict)

    def cpu(self) -> CpuSample:
        roots = [r for r in (self.endpoint.pid, self.pg.pid if self.pg else None) if r]
        trees = trees_cpu(roots)
        base = CpuSample.of_tree("server", self.endpoint.pid, io=True)
        pg_pid = self.pg.pid if self.pg else None
        user, system = trees.get(pg_pid, (0.0, 0.0)) if pg_pid else (0.0, 0.0)
        parts = {**base.parts, "postgres": user + system}
        return CpuSample(parts, base.kernel, base.io)

    async def counters(self) -> dict[str, int]:
        row = await self.db.fetchrow(PG_COUNTERS)
        keys = ("wal_bytes", "txid", "wal_sync", "wal_fpi", "xact_commit")
        return {key: int(value or 0) for key, value in zip(keys, row, strict=True)}

    @contextlib.asynccontextmanager
    async def measuring(self, run: ScenarioRun, jobs: int) -> AsyncIterator[None]:
        async with pgwork.pg_work(self.db, run):
            yield

    def resource_metrics(
        self, run: ScenarioRun, jobs: int, cpu: dict[str, Any], counters: CounterPair
    ) -> None:
        ServerTarget.resource_metrics(self, run, jobs, cpu, counters)
        pg_s = cpu["cpu_s"].get("postgres", 0.0)
        run.add("CPU per job: postgres", pg_s / jobs * 1000, "ms")
        run.add("CPU per job: all + PostgreSQL", sum(cpu["cpu_s"].values()) / jobs * 1000, "ms")
        run.add("cores: postgres", cpu["cores"].get("postgres"), "cores")
        delta = pgwork.counter_deltas(counters)
        run.raw["postgres_counters"] = delta
        pgwork.add_work_metrics(run, jobs, delta)

    def annotate(self, run: ScenarioRun) -> None:
        run.raw.update(self.extras)
        idle = self.extras.get("idle_cpu")
        if idle is not None:
            run.add("idle server CPU (server + PostgreSQL)", idle["parts_cores"], "cores")


@dataclass(slots=True)
class PgEmbeddedProfile:
    """A private PostgreSQL for the whole run; per scenario run a fresh database and
    ``chronoq up --store`` on it (or, for ``floor``, the floor in one process)."""

    settings: Settings
    python: str
    server_args: list[str]
    name: str = "embedded"
    pg: BenchPostgres | None = None
    pg_info: dict[str, Any] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        settings = self.settings
        async with session_postgres(
            settings.keep_data, settings.pg_statements, "chronoq up --store on "
        ) as (
            pg,
            info,
        ):
            self.pg, self.pg_info = pg, info
            try:
                yield
            finally:
                self.pg = None

    @contextlib.asynccontextmanager
    async def target(self, scenario: Scenario) -> AsyncIterator[PgServerTarget | FloorTarget]:
        assert self.pg is not None, "target() outside session()"
        if scenario.name in FLOORS:
            async with floor_target(
                self.pg, self.settings, fronts=0, workers=1, variant=scenario.name
            ) as floor:
                yield floor
            return
        database, dsn = await self.pg.create_database()
        db = await pgwork.observer_pool(dsn)
        try:
            args = [*self.server_args, "--store", dsn]
            async with chronoq_server(self.python, args, keep_data=self.settings.keep_data) as ep:
                target = PgServerTarget(ep, self.settings, pg=self.pg, db=db)
                try:
                    warm = {"jobs": 0}
                    if scenario.warm:
                        warm = await pgwork.warm_up(
                            target, db, self.settings, "ANALYZE jobs, job_runs"
                        )
                    before = target.cpu()
                    await asyncio.sleep(self.settings.idle_s)
                    target.extras.update(warmup=warm, idle_cpu=cpu_between(before, target.cpu()))
                    yield target
                finally:
                    await target.close()
        finally:
            await db.close()
            with contextlib.suppress(Exception):
                await self.pg.drop_database(database)

    def variants(self) -> tuple[str, ...]:
        return ("",)

    def use(self, variant: str) -> None:
        assert variant == "", variant

    def describe(self) -> dict[str, Any]:
        return {"store": "postgresql (private, --pg-store)", "postgres": self.pg_info}

    def notes(self) -> str | None:
        pg = self.pg_info
        return (
            f"embedded profile, chronoq up --store on a private"
            f" {pg.get('version', 'PostgreSQL ?').split(',')[0]} with fsync={pg.get('fsync')},"
            f" synchronous_commit={pg.get('synchronous_commit')};"
            f" shared_buffers={pg.get('shared_buffers')}; a fresh database per run"
        )
