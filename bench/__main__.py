"""``python -m bench``: run the scenarios against a profile, print the table, write the JSON."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import report
from bench.distributed import ClusterProfile
from bench.embedded import EmbeddedProfile
from bench.floor import ratios, run_order, wants_floor
from bench.model import DEFAULT_FUTURE_SIZES, ClusterSize, ScenarioRun, Settings
from bench.passes import fresh_ratios, pass_key
from bench.pgembedded import PgEmbeddedProfile
from bench.scenarios import DEFAULTS, SCENARIOS
from bench.server import server_help
from bench.target import Profile, Scenario
from tests.support.metrics import MetricSelector

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _available(profile: str) -> list[str]:
    return [name for name, s in SCENARIOS.items() if profile in s.profiles]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--profile",
        choices=tuple(DEFAULTS),
        default="embedded",
        help="embedded: 'chronoq up' (default); distributed: role processes over PostgreSQL",
    )
    p.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated, from {', '.join(_available('embedded'))} (default:"
        f" {', '.join(DEFAULTS['embedded'])}); with --profile distributed from"
        f" {', '.join(_available('distributed'))} (default: {', '.join(DEFAULTS['distributed'])})",
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
        help="extra argument for 'chronoq up' or every role process (repeatable; use"
        " --server-arg=--flag)",
    )
    p.add_argument("--url", help="use this already-running server (http://host:port)")
    p.add_argument("--server-pid", type=int, help="with --url: measure this process tree's CPU")
    p.add_argument("--json", type=Path, help="also write the JSON here")
    p.add_argument(
        "--completed-metric",
        default='jobs_executed_total{status="success"}',
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
    p.add_argument("--no-verify", action="store_true", help="skip counting COMPLETED jobs after")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs chronoq up")
    p.add_argument("--keep-data", action="store_true", help="keep the servers' temp data dirs")
    p.add_argument("--no-uvloop", action="store_true")
    p.add_argument(
        "--pg-store",
        action="store_true",
        help="embedded: chronoq up --store on a private PostgreSQL (fsync on), a fresh database"
        " per run (needed for the floor scenario)",
    )
    p.add_argument(
        "--fresh-pass",
        action="store_true",
        help="PostgreSQL: run each scenario on a just-migrated database (no warm-up), then"
        " again on the same database; rows <scenario>[fresh] and fresh / warm ratios",
    )
    _distributed_arguments(p)
    args = p.parse_args(argv)
    known = _available(args.profile)
    if args.scenarios is None:
        args.scenarios = ",".join(DEFAULTS[args.profile])
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenario_list if s not in known]
    if unknown:
        p.error(f"unknown scenario(s) for --profile {args.profile}: {', '.join(unknown)}")
    if wants_floor(args.scenario_list) and args.profile == "embedded" and not args.pg_store:
        p.error("the floor runs on PostgreSQL: add --pg-store (or --profile distributed)")
    if args.fresh_pass and args.profile == "embedded" and not args.pg_store:
        p.error("--fresh-pass measures PostgreSQL: add --pg-store (or --profile distributed)")
    if args.profile == "distributed" and args.url:
        p.error("--url is for the embedded profile; the distributed profile starts its own")
    return args


def _distributed_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("--profile distributed")
    g.add_argument("--api", type=int, default=2, help="api processes (default 2)")
    g.add_argument("--pickers", type=int, default=2, help="picker processes (default 2)")
    g.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    g.add_argument("--coordinators", type=int, default=2, help="coordinators (default 2)")
    g.add_argument(
        "--future-sizes",
        type=_sizes,
        default=DEFAULT_FUTURE_SIZES,
        help="pending future jobs for 'future', cumulative (default 0,10000,100000,1000000)",
    )
    g.add_argument(
        "--future-jobs", type=int, default=20_000, help="immediate jobs per 'future' size (20,000)"
    )
    g.add_argument(
        "--warmup-jobs",
        type=int,
        default=5_000,
        help="jobs run through each fresh cluster, then ANALYZE, before measuring (default"
        " 5,000; 0 = measure the cold start: no statistics yet)",
    )
    g.add_argument("--failover-rounds", type=int, default=3, help="kills per role (default 3)")
    g.add_argument(
        "--backends",
        type=_backends,
        default=(),
        metavar="s3,sqs,redis,etcd",
        help="also run every scenario, alternately, on the same cluster plus these"
        " seed-shaped backends (cluster up --with); rows [stack] and ratios to PostgreSQL"
        " alone",
    )
    g.add_argument(
        "--pg-sample",
        type=float,
        default=0.0,
        metavar="S",
        help="sample pg_stat_activity every S seconds during throughput runs (default off)",
    )
    g.add_argument(
        "--pg-statements",
        action="store_true",
        help="load pg_stat_statements; the JSON gets PostgreSQL's time per statement",
    )


def _backends(text: str) -> tuple[str, ...]:
    from chronoq.errors import ConfigError
    from chronoq.runtime.stack import parse_with

    try:
        return parse_with(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    if not sizes or any(s < 0 for s in sizes):
        raise argparse.ArgumentTypeError("comma-separated counts >= 0")
    return tuple(sorted(sizes))


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
        repeat=args.repeat,
        keep_data=args.keep_data,
        cluster=ClusterSize(
            api=args.api, pickers=args.pickers, workers=args.workers, coordinators=args.coordinators
        ),
        future_sizes=tuple(args.future_sizes),
        future_jobs=args.future_jobs,
        failover_rounds=args.failover_rounds,
        pg_sample_s=args.pg_sample,
        pg_statements=args.pg_statements or args.pg_store or args.profile == "distributed",
        warmup_jobs=0 if args.fresh_pass else args.warmup_jobs,
        fresh_pass=args.fresh_pass,
        backends=tuple(getattr(args, "backends", ())),
    )


def server_args(args: argparse.Namespace) -> list[str]:
    """``--server-arg``s, plus ``--echo-delay 0`` when the server has that option."""
    if args.url:
        return []
    extra = list(args.server_arg)
    if not any(a.startswith("--echo-delay") for a in extra) and "--echo-delay" in server_help(
        args.python
    ):
        extra += ["--echo-delay", "0"]
    return extra


def make_profile(args: argparse.Namespace, settings: Settings, extra: list[str]) -> Profile:
    if args.profile == "distributed":
        return ClusterProfile(settings, extra)
    if args.pg_store:
        return PgEmbeddedProfile(settings, args.python, extra)
    return EmbeddedProfile(settings, args.python, extra, args.url, args.server_pid)


# --- running ------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


async def run_once(profile: Profile, scenario: Scenario, settings: Settings) -> list[ScenarioRun]:
    """One run of ``scenario`` on a fresh target; an error becomes a run with ``error``."""
    try:
        if not scenario.needs_target:
            got = await scenario.run(None, settings)
            return got if isinstance(got, list) else [got]
        async with profile.target(scenario) as target:
            runs: list[ScenarioRun] = []
            for fresh in _passes(settings, scenario):
                got = await scenario.run(target, settings)
                for run in got if isinstance(got, list) else [got]:
                    target.annotate(run)
                    run.raw["fresh_pass"] = fresh
                    runs.append(run)
            return runs
    except Exception as exc:
        traceback.print_exc()
        return [ScenarioRun(scenario.name, error=f"{type(exc).__name__}: {exc}")]


def _passes(settings: Settings, scenario: Scenario) -> tuple[bool, ...]:
    """``--fresh-pass``: (fresh, warm) on one target, for scenarios made once per repeat."""
    return (True, False) if settings.fresh_pass and scenario.repeat == "each" else (False,)


async def run_scenarios(
    profile: Profile, names: Sequence[str], settings: Settings
) -> dict[str, list[ScenarioRun]]:
    collected: dict[str, list[ScenarioRun]] = {}

    def repeats_of(name: str) -> int:
        return settings.repeat if SCENARIOS[name].repeat == "each" else 1

    for name, indices, repeats in run_order(names, repeats_of):  # batch, floor alternate
        scenario = SCENARIOS[name]
        for index in indices:
            for variant in profile.variants():  # alternately, so drift hits both alike
                profile.use(variant)
                label = f" [{variant}]" if variant else ""
                _say(f"{name}{label} run {index + 1}/{repeats} ...")
                # The last run's writes are still being written back (hundreds of MB after
                # http): flushed first, they do not slow this run's fsyncs. Measured: light-load
                # p50 1.34 ms right after http and batch, 0.83 ms with this sync.
                await asyncio.to_thread(os.sync)
                started = time.perf_counter()
                for run in await run_once(profile, scenario, settings):
                    run.raw.setdefault("scenario_wall_s", time.perf_counter() - started)
                    if scenario.repeat != "inside":
                        first = run.metrics[0] if run.metrics else None
                        _say(f"  {first.name} = {first.value}" if first else f"  {run.error}")
                    key = pass_key(run.scenario, variant, run.raw.get("fresh_pass", False))
                    collected.setdefault(key, []).append(run)
    return collected


async def run_all(args: argparse.Namespace) -> tuple[Profile, dict[str, Any]]:
    """Run the scenarios inside the profile's session. SIGTERM (like Ctrl-C) cancels the run;
    servers, clusters and PostgreSQL are still stopped and their files deleted."""
    settings = settings_from(args)
    extra = server_args(args)
    profile = make_profile(args, settings, extra)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated: list[int] = []

    def on_sigterm() -> None:
        terminated.append(signal.SIGTERM)
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        async with profile.session():
            collected = await run_scenarios(profile, args.scenario_list, settings)
            collected.update(ratios(collected))  # Chronoq / floor, pair by pair
            collected.update(fresh_ratios(collected))  # fresh / warm, pair by pair
    except asyncio.CancelledError:
        if terminated:
            _say("SIGTERM: stopped")
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    results = {
        key: {
            "rows": report.aggregate(runs),
            "errors": [r.error for r in runs if r.error],
            "runs": [report.run_to_dict(r) for r in runs],
        }
        for key, runs in collected.items()
    }
    outcome = {"profile": profile.name, "server_args": extra, **profile.describe()}
    return profile, {**outcome, "results": results}


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
        profile, outcome = runner.run(run_all(args))
    document = {
        "started": started,
        "finished": report.timestamp(),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "machine": report.machine_info(loop_name),
        **outcome,
    }
    print()
    notes = profile.notes()
    if notes:
        print(notes)
    print(report.render_table(outcome["results"]))
    ratios = report.render_ratios(outcome["results"])
    if ratios:
        print("\n" + ratios)
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
