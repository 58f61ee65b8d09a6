"""The distributed profile: Chronoq as separate role processes over a private PostgreSQL.

A private PostgreSQL with production durability (fsync on) lives for the whole
benchmark (``bench.postgres``); every scenario run gets a fresh database and a
fresh cluster (``chronoq.runtime.cluster.Cluster``: one ``chronoq <role>`` process
per member, each in its own session), settled, warmed up and left idle for a
moment before it is measured (``bench.cluster.ClusterTarget``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import pgwork
from bench.cluster import ClusterTarget, option_value
from bench.cpu import cpu_between
from bench.floor import FLOORS, FloorTarget, floor_target
from bench.model import Settings
from bench.pgwork import observer_pool
from bench.postgres import BenchPostgres, session_postgres
from bench.target import Scenario
from chronoq.runtime.cluster import Cluster, ClusterPlan
from tests.support.processes import free_port_range


@contextlib.asynccontextmanager
async def bench_cluster(
    pg: BenchPostgres,
    settings: Settings,
    extra: Sequence[str],
    *,
    backends: tuple[str, ...] = (),
    ready_timeout_s: float = 120.0,
    database: tuple[str, str] | None = None,
) -> AsyncIterator[ClusterTarget]:
    """A settled cluster over a fresh database (with ``backends`` started next to it, as
    ``cluster up --with`` does); everything stopped and dropped after. Given ``database``
    (name, dsn), the cluster runs on that one instead, which is kept."""
    fresh = database is None
    name, dsn = await pg.create_database() if database is None else database
    folder = pg.folder / "clusters" / name
    size = settings.cluster
    plan = ClusterPlan(
        folder=folder, store=dsn, api=size.api, pickers=size.pickers, workers=size.workers,
        coordinators=size.coordinators, base_port=free_port_range(size.api), extra=list(extra),
        backends=backends, writers=2 if "redis" in backends else 0,
    )  # fmt: skip
    cluster = Cluster(plan)
    db = await observer_pool(dsn)  # as bench_observer: kept out of statements per job
    failed = False
    try:
        started = time.perf_counter()
        cluster.start()
        target = ClusterTarget(
            cluster=cluster, pg=pg, database=name, settings=settings, db=db,
            shard_count=int(option_value(extra, "shard-count") or 256),
            member_ttl=float(option_value(extra, "member-ttl") or 3.0),
        )  # fmt: skip
        await target.wait_http(ready_timeout_s)
        await target.wait_settled(ready_timeout_s)
        target.ready_s = time.perf_counter() - started
        yield target
    except Exception:
        failed = True  # keep the logs of a run that went wrong (not of a cancelled one)
        raise
    finally:
        # Synchronous on purpose: this must run to the end even when the task is cancelled.
        cluster.stop()
        await db.close()
        if fresh:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await pg.drop_database(name)
        if failed:  # the folder goes with the PostgreSQL folder: keep the logs elsewhere
            kept = Path(tempfile.gettempdir()) / f"chronoq-bench-{name}-logs"
            with contextlib.suppress(OSError):
                shutil.copytree(folder / "logs", kept, dirs_exist_ok=True)
                print(f"[bench] cluster logs kept in {kept}", file=sys.stderr, flush=True)
        if not settings.keep_data:
            shutil.rmtree(folder, ignore_errors=True)


async def warm_up(target: ClusterTarget, settings: Settings) -> dict[str, Any]:
    """Run ``warmup_jobs`` through the cluster, then ANALYZE the tables.

    A fresh database has no statistics, and autovacuum looks at it once a minute at
    most: until then the hot statements' plans (and asyncpg's cached prepared
    statements, whose generic plans were made while the tables were empty) scan whole
    tables, which makes the first minute several times slower than the steady state.
    ``--warmup-jobs 0`` measures that cold start instead.
    """
    return await pgwork.warm_up(target, target.db, settings, "ANALYZE jobs, job_runs")


STACK = "stack"
"""The variant with the seed-shaped backends (``--backends``)."""


@dataclass(slots=True)
class ClusterProfile:
    """A private PostgreSQL (fsync on) for the whole run; a fresh database and cluster,
    warmed up and left idle for ``idle_s``, for every scenario run."""

    settings: Settings
    server_args: list[str]
    name: str = "distributed"
    pg: BenchPostgres | None = None
    pg_info: dict[str, Any] = field(default_factory=dict)
    variant: str = ""

    def variants(self) -> tuple[str, ...]:
        return ("", STACK) if self.settings.backends else ("",)

    def use(self, variant: str) -> None:
        assert variant in self.variants(), variant
        self.variant = variant

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        settings = self.settings
        async with session_postgres(settings.keep_data, settings.pg_statements, "") as (
            pg,
            info,
        ):
            self.pg, self.pg_info = pg, info
            try:
                yield
            finally:
                self.pg = None

    @contextlib.asynccontextmanager
    async def target(self, scenario: Scenario) -> AsyncIterator[ClusterTarget | FloorTarget]:
        assert self.pg is not None, "target() outside session()"
        if scenario.name in FLOORS:  # the floor queue on a fresh database (bench.floor)
            size, name = self.settings.cluster, scenario.name
            async with floor_target(
                self.pg, self.settings, fronts=size.api, workers=size.workers, variant=name
            ) as floor:
                yield floor
            return
        backends = self.settings.backends if self.variant == STACK else ()
        async with bench_cluster(
            self.pg, self.settings, self.server_args, backends=backends
        ) as target:
            print(
                f"[bench]   cluster settled in {target.ready_s:.1f}s", file=sys.stderr, flush=True
            )
            warmup = await warm_up(target, self.settings) if scenario.warm else {"jobs": 0}
            before = target.cpu()
            await asyncio.sleep(self.settings.idle_s)  # what the settled, idle cluster burns
            target.extras.update(warmup=warmup, idle_cpu=cpu_between(before, target.cpu()))
            yield target

    def describe(self) -> dict[str, Any]:
        return {
            "backends": list(self.settings.backends),
            "cluster": self.settings.cluster.as_dict(),
            "future_sizes": list(self.settings.future_sizes),
            "postgres": self.pg_info,
        }

    def notes(self) -> str | None:
        pg, size = self.pg_info, self.settings.cluster
        return (
            f"distributed profile: {size.api} api, {size.coordinators} coordinators,"
            f" {size.pickers} pickers, {size.workers} workers, one process each;"
            f" {pg.get('version', 'PostgreSQL ?').split(',')[0]} with fsync={pg.get('fsync')},"
            f" synchronous_commit={pg.get('synchronous_commit')} (durable);"
            f" shared_buffers={pg.get('shared_buffers')}"
            + (
                f"; rows marked [stack]: the same cluster plus {', '.join(self.settings.backends)}"
                " (cluster up --with), run alternately with the plain one"
                if self.settings.backends
                else ""
            )
        )
