"""``python -m bench``: run the scenarios, print the table, write the JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import traceback
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from bench import distributed, report
from bench.api import MetricSelector
from bench.model import ScenarioRun
from bench.scenarios import DEFAULT_SCENARIOS, NEEDS_SERVER, SCENARIOS, Settings
from bench.server import Target, chronoq_server, parse_url, server_help

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--profile",
        choices=("embedded", "distributed"),
        default="embedded",
        help="embedded: 'chronoq up' (default); distributed: role processes over PostgreSQL",
    )
    p.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all); with --profile"
        f" distributed from {', '.join(distributed.DIST_SCENARIOS)}",
    )
    p.add_argument("--jobs", type=int, help="N for http and batch (defaults 20,000 and 50,000)")
    p.add_argument("--latency-jobs", type=int, default=500)
    p.add_argument("--latency-rate", type=float, default=50.0, help="submits/s (default 50)")
    p.add_argument("--firelag-jobs", type=int, default=2_000)
    p.add_argument("--ceiling-requests", type=int, default=60_000)
    p.add_argument("--http-clients", type=int, default=16)
    p.add_argument("--batch-clients", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=1_000)
    p.add_argument("--repeat", type=int, default=1, help="runs per scenario; the median is shown")
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for 'chronoq up' (repeatable; use --server-arg=--flag)",
    )
    p.add_argument("--url", help="use this already-running server (http://host:port)")
    p.add_argument("--server-pid", type=int, help="with --url: measure this process tree's CPU")
    p.add_argument("--json", type=Path, help="also write the JSON here")
    p.add_argument(
        "--completed-metric",
        default='jobs_executed_total{status="COMPLETED"}',
        help="Prometheus counter of completed runs (completion signal)",
    )
    p.add_argument("--fire-lag-metric", default="job_fire_lag_seconds")
    p.add_argument("--poll-interval", type=float, default=0.05, help="completion poll, seconds")
    p.add_argument(
        "--timeline-interval",
        type=float,
        default=0.25,
        help="throughput timeline sample period, seconds (0: off)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="per-phase deadline, seconds")
    p.add_argument("--no-verify", action="store_true", help="skip listing COMPLETED jobs after")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs chronoq up")
    p.add_argument("--keep-data", action="store_true", help="keep the servers' temp data dirs")
    p.add_argument("--no-uvloop", action="store_true")
    distributed.add_arguments(p)
    args = p.parse_args(argv)
    dist = args.profile == "distributed"
    known = distributed.DIST_SCENARIOS if dist else tuple(SCENARIOS)
    if args.scenarios is None:
        args.scenarios = ",".join(distributed.DIST_SCENARIOS if dist else DEFAULT_SCENARIOS)
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenario_list if s not in known]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}")
    if dist and args.url:
        p.error("--url is for the embedded profile; the distributed profile starts its own")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        http_jobs=args.jobs or 20_000,
        http_clients=args.http_clients,
        batch_jobs=args.jobs or 50_000,
        batch_size=args.batch_size,
        batch_clients=args.batch_clients,
        latency_jobs=args.latency_jobs,
        latency_rate=args.latency_rate,
        firelag_jobs=args.firelag_jobs,
        ceiling_requests=args.ceiling_requests,
        poll_interval_s=args.poll_interval,
        timeline_interval_s=args.timeline_interval,
        timeout_s=args.timeout,
        completed_metric=MetricSelector.parse(args.completed_metric),
        fire_lag_metric=args.fire_lag_metric,
        verify=not args.no_verify,
    )


def server_args(args: argparse.Namespace) -> list[str]:
    extra = list(args.server_arg)
    if not any(a.startswith("--echo-delay") for a in extra) and "--echo-delay" in server_help(
        args.python
    ):
        extra += ["--echo-delay", "0"]
    return extra


@contextlib.asynccontextmanager
async def target_for(
    args: argparse.Namespace, scenario: str, extra: list[str]
) -> AsyncIterator[Target | None]:
    if scenario not in NEEDS_SERVER:
        yield None
    elif args.url:
        host, port = parse_url(args.url)
        yield Target(host=host, port=port, pid=args.server_pid)
    else:
        async with chronoq_server(args.python, extra, keep_data=args.keep_data) as target:
            yield target


async def run_one(args: argparse.Namespace, scenario: str, extra: list[str]) -> ScenarioRun:
    settings = settings_from(args)
    try:
        async with target_for(args, scenario, extra) as target:
            return await SCENARIOS[scenario](target, settings)  # type: ignore[arg-type]
    except Exception as exc:
        traceback.print_exc()
        return ScenarioRun(scenario, error=f"{type(exc).__name__}: {exc}")


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    extra = [] if args.url else server_args(args)
    results: dict[str, Any] = {}
    for scenario in args.scenario_list:
        runs: list[ScenarioRun] = []
        for index in range(args.repeat):
            print(f"[bench] {scenario} run {index + 1}/{args.repeat} ...", file=sys.stderr)
            started = time.perf_counter()
            run = await run_one(args, scenario, extra)
            run.raw["scenario_wall_s"] = time.perf_counter() - started
            runs.append(run)
            first = run.metrics[0] if run.metrics else None
            summary = f"{first.name} = {first.value}" if first else run.error
            print(f"[bench]   {summary}", file=sys.stderr)
        results[scenario] = {
            "rows": report.aggregate(runs),
            "errors": [r.error for r in runs if r.error],
            "runs": [report.run_to_dict(r) for r in runs],
        }
    return {"server_args": extra, "results": results}


def _runner(no_uvloop: bool) -> tuple[asyncio.Runner, str]:
    if not no_uvloop:
        try:
            import uvloop

            return asyncio.Runner(loop_factory=uvloop.new_event_loop), "uvloop"
        except ImportError:
            pass
    return asyncio.Runner(), "asyncio"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runner, loop_name = _runner(args.no_uvloop)
    started = report.timestamp()
    with runner:
        if args.profile == "distributed":
            extra = server_args(args)
            outcome = runner.run(distributed.run_all(args, settings_from(args), extra))
        else:
            outcome = runner.run(run_all(args))
    document = {
        "started": started,
        "finished": report.timestamp(),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "url": args.url,
        "machine": report.machine_info(loop_name),
        **outcome,
    }
    print()
    if args.profile == "distributed":
        print(distributed.notes(document))
    print(report.render_table(outcome["results"]))
    path = RESULTS_DIR / f"{started}.json"
    report.write_json(path, document)
    if args.json:
        report.write_json(args.json, document)
    print(f"\nJSON: {path}" + (f" and {args.json}" if args.json else ""))
    failed = any(
        result["errors"] or any(row["pass"] is False for row in result["rows"])
        for result in outcome["results"].values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
