"""How Chronoq's distributed mode scales with pending jobs and with role processes: the
measurements of the scale model (issue 11 item 5; docs/scale.md).

``python -m bench.drivers.scale [--pending 0,1000000,10000000] [--roles 1,2,4]
[--fires 100000] [--jobs 50000] [--repeat 3] [--shards 256] [--json PATH]``

One private PostgreSQL (``bench.postgres``: fsync on) and **one database** for the whole
run. For each pending size, smallest first, the pending jobs are topped up with COPY
(``bench.pending``: one-shot jobs due over the next year), then VACUUM ANALYZE and
CHECKPOINT. Then for each role count n — n api, n pickers and n workers, one coordinator,
one ``chronoq <role>`` process each — a cluster starts on that database, is warmed up
(5,000 jobs, ANALYZE) and, ``--repeat`` times:

* **storm**: ``--fires`` jobs due at one instant a few seconds ahead, written with COPY
  (and the hint a submission sends): fire lag (``started_at - scheduled_for``) p50, p99
  and max; *fire rate* = fires / (last start - the instant); CPU per fire of each role and
  of PostgreSQL, from the instant until all are recorded;
* **batch**: ``--jobs`` no-op jobs through ``POST /v1/jobs:batch``, end to end
  (``bench.scenarios.batch``), with its CPU per job per role;

each followed by deleting the measured jobs and their runs, VACUUM and CHECKPOINT, so every
measurement starts from the same pending set. Prints one row of medians per (pending, n)
and writes JSON (every run) to ``bench/results/scale-<UTC>.json`` and ``--json``;
``python -m bench.drivers.scale_plot`` draws the curves and the model from it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.cluster import ClusterTarget
from bench.cpu import cpu_between
from bench.distributed import bench_cluster, warm_up
from bench.measure import wait_all_done
from bench.model import ClusterSize, ScenarioRun, Settings
from bench.pending import PENDING_USER, load_due, load_pending
from bench.pgwork import observer_pool
from bench.postgres import BenchPostgres, session_postgres
from bench.report import aggregate, machine_info, run_to_dict, timestamp, write_json
from bench.scenarios import Fires
from bench.stats import summary_ms
from bench.target import new_user
from chronoq.adapters.postgres import PostgresStore

OPEN_BEFORE_S = 1.0
"""The storm's measuring window opens this long before the instant: before the pickers'
look-ahead (0.5 s by default) lets them fire the first runs."""
SIZES = (
    "SELECT pg_total_relation_size('jobs'), pg_total_relation_size('job_runs'),"
    " (SELECT count(*) FROM jobs WHERE user_id = $1 AND status = 'PENDING')"
)
SUMMARY = (
    ("storm", "fire rate", "fires/s"),
    ("storm", "fire lag p50", "ms"),
    ("storm", "fire lag p99", "ms"),
    ("storm", "fire lag max", "ms"),
    ("storm", "CPU per job: postgres", "ms"),
    ("batch", "end-to-end throughput", "jobs/s"),
    ("batch", "CPU per job: postgres", "ms"),
    ("batch", "CPU per job: all roles + PostgreSQL", "ms"),
    ("batch", "other processes (avg cores)", "cores"),
)


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


async def storm(target: ClusterTarget, s: Settings, fires: int) -> ScenarioRun:
    """``fires`` jobs due at one instant: lag, rate and CPU per fire (see the module doc)."""
    user = new_user("storm")
    run = ScenarioRun("storm", raw={"user_id": user, "jobs": fires})
    baseline = await target.completed()
    fire_at = float(math.ceil(time.time() + 3 + fires / 50_000))
    run.raw["load_s"] = await load_due(target.db, user, fires, fire_at, target.shard_count)
    margin = fire_at - time.time()
    if margin < OPEN_BEFORE_S + 0.25:
        raise RuntimeError(f"the due jobs were written only {margin:.2f}s before their instant")
    await asyncio.sleep(margin - OPEN_BEFORE_S)
    async with target.measuring(run, fires):
        before, counters_before = target.cpu(), await target.counters()
        await wait_all_done(target, s, baseline, fires, user)
        after, counters_after = target.cpu(), await target.counters()
    runs = await target.first_runs(user, [])
    found = Fires.of(runs, list(runs), fire_at)
    lag = summary_ms(found.lags)
    last_start = max(r.started_at or fire_at for r in runs.values())
    run.raw.update(margin_s=margin, start_lag_ms=lag, missing=fires - len(runs))
    run.add("fire rate", fires / max(last_start - fire_at, 1e-3), "fires/s")
    run.add("fire lag p50", lag["p50"], "ms")
    run.add("fire lag p99", lag["p99"], "ms")
    run.add("fire lag max", lag["max"], "ms")
    run.add("started early (negative lag)", sum(v < 0 for v in found.lags), "runs")
    run.add("runs missing", fires - len(runs), "runs")
    cpu = cpu_between(before, after)
    run.raw["cpu"] = cpu
    target.resource_metrics(run, fires, cpu, (counters_before, counters_after))
    return run


async def _clean(target: ClusterTarget, user: str) -> None:
    """Delete a measurement's jobs and runs, then VACUUM and CHECKPOINT (the next one starts
    from the same pending set, with no dirty pages left over)."""
    await target.db.execute("DELETE FROM job_runs WHERE user_id = $1", user)
    await target.db.execute("DELETE FROM jobs WHERE user_id = $1", user)
    await target.db.execute("VACUUM jobs, job_runs")
    await target.db.execute("CHECKPOINT")


async def measure_point(
    pg: BenchPostgres, database: tuple[str, str], s: Settings, n: int, args: argparse.Namespace
) -> list[ScenarioRun]:
    """A cluster of n api, n pickers, n workers on ``database``: storm and batch, repeated."""
    size = ClusterSize(api=n, pickers=n, workers=n, coordinators=1)
    settings = replace(s, cluster=size)
    runs: list[ScenarioRun] = []
    extra = ["--shard-count", str(args.shards)]
    fires = args.fires
    async with bench_cluster(pg, settings, extra, database=database) as target:
        warmup = await warm_up(target, settings)
        await _clean(target, "bench-warmup")
        _say(f"  cluster of {n} settled in {target.ready_s:.1f}s; warm-up {warmup}")
        for index in range(s.repeat):
            for name in ("storm", "batch"):
                run = await (storm(target, settings, fires) if name == "storm"
                             else scenarios.batch(target, settings))  # fmt: skip
                first = run.metrics[0]
                _say(f"  n={n} {name} {index + 1}/{s.repeat}: {first.name} = {first.value:,.0f}")
                await _clean(target, run.raw["user_id"])
                runs.append(run)
    return runs


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    s = Settings(
        batch_jobs=args.jobs, repeat=args.repeat, timeline_interval_s=0, idle_s=0,
        pg_statements=args.pg_statements,
    )  # fmt: skip
    points: list[dict[str, Any]] = []
    async with session_postgres(False, args.pg_statements, "scale: ") as (pg, info):
        name, dsn = database = await pg.create_database()
        store = PostgresStore(dsn)
        await store.start()  # the schema, before anything is loaded
        await store.close()
        db = await observer_pool(dsn)
        have = 0
        try:
            for pending in args.pending:
                loaded = (
                    await load_pending(db, have, pending, args.shards) if pending > have else 0.0
                )
                have = max(have, pending)
                for statement in ("VACUUM ANALYZE jobs, job_runs", "CHECKPOINT"):
                    await db.execute(statement)
                jobs_bytes, runs_bytes, counted = await db.fetchrow(SIZES, PENDING_USER)
                _say(f"{counted:,} pending (loaded in {loaded:.0f}s); jobs {jobs_bytes:,} B")
                for n in args.roles:
                    runs = await measure_point(pg, database, s, n, args)
                    points.append(
                        {
                            "pending": counted, "roles": n, "load_s": loaded,
                            "jobs_table_bytes": jobs_bytes, "runs_table_bytes": runs_bytes,
                            "storm": aggregate([r for r in runs if r.scenario == "storm"]),
                            "batch": aggregate([r for r in runs if r.scenario == "batch"]),
                            "runs": [run_to_dict(r) for r in runs],
                        }
                    )  # fmt: skip
        finally:
            await db.close()
            await pg.drop_database(name)
    return {"postgres": info, "shards": args.shards, "fires": args.fires, "points": points}


def median_of(point: dict[str, Any], scenario: str, metric: str) -> float | None:
    row = next((r for r in point[scenario] if r["metric"] == metric), None)
    return None if row is None else row["median"]


def render(document: dict[str, Any]) -> str:
    header = ["pending", "n"] + [f"{sc} {m} ({u})" for sc, m, u in SUMMARY]
    lines = [header]
    for point in document["points"]:
        values = [median_of(point, sc, m) for sc, m, _ in SUMMARY]
        lines.append(
            [f"{point['pending']:,}", str(point["roles"])]
            + ["-" if v is None else f"{v:,.3g}" if v < 10 else f"{v:,.0f}" for v in values]
        )
    return "\n".join(" | ".join(line) for line in lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.drivers.scale", description=__doc__)
    counts = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    p.add_argument("--pending", type=counts, default=[0, 1_000_000, 10_000_000])
    p.add_argument("--roles", type=counts, default=[1, 2, 4])
    p.add_argument("--fires", type=int, default=100_000)
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--shards", type=int, default=256, help="the cluster's --shard-count")
    p.add_argument("--json", type=Path)
    p.add_argument("--pg-statements", action="store_true", help="the top statements per run")
    args = p.parse_args(argv)
    args.pending = sorted(args.pending)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    document = asyncio.run(run_all(args))
    document.update(machine=machine_info("asyncio"), seconds=time.time() - started)
    print(render(document))
    for path in filter(None, [Path("bench/results") / f"scale-{timestamp()}.json", args.json]):
        write_json(path, document)
        _say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
