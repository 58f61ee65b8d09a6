"""The scenarios, each written once against ``bench.target.Target``.

``ceiling``, ``http``, ``batch``, ``latency`` and ``firelag`` run on every profile;
``future`` and ``failover`` (``bench.cluster_scenarios``) need a cluster.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench import api, pgwork
from bench.cluster_scenarios import failover, future
from bench.cpu import CpuSample, cpu_between
from bench.floor import floor
from bench.httpclient import Connection
from bench.load import close_connections, drive, open_connections
from bench.measure import GOAL_ZERO, connect, host_header, throughput, wait_all_done
from bench.model import Goal, ScenarioRun, Settings
from bench.server import echo_server
from bench.stats import summary_ms
from bench.target import RunTimes, Scenario, Target, new_user
from chronoq.domain.clock import format_rfc3339, parse_rfc3339
from tests.support.metrics import histogram_delta

GOAL_HTTP_JOBS_S = Goal(">=", 2_000)
GOAL_BATCH_JOBS_S = Goal(">=", 8_000)
GOAL_START_P99_MS = Goal("<=", 10)
GOAL_START_P99_MS_PG = Goal("<=", 5)
"""Issue 11: light-load submit → start p99 on PostgreSQL ≤ 5 ms, from the start."""
GOAL_FIRE_P99_MS = Goal("<=", 50)
GOAL_FIRE_MAX_MS = Goal("<=", 100)


# --- end-to-end throughput (http, batch) -----------------------------------------------


async def http(target: Target, s: Settings) -> ScenarioRun:
    """N no-op jobs, one ``POST /submit`` each, over ``http_clients`` keep-alive connections."""
    run = ScenarioRun("http", raw={"user_id": new_user("http")})
    requests = api.submit_requests(host_header(target), run.raw["user_id"], s.http_jobs)
    goal = GOAL_HTTP_JOBS_S if target.throughput_goals else None
    await throughput(
        target, s, run, jobs=s.http_jobs, clients=s.http_clients, requests=requests, goal=goal
    )
    return run


async def batch(target: Target, s: Settings) -> ScenarioRun:
    """N no-op jobs through ``POST /v1/jobs:batch``, ``batch_size`` per request."""
    run = ScenarioRun("batch", raw={"user_id": new_user("batch"), "batch_size": s.batch_size})
    requests = api.batch_requests(
        host_header(target), run.raw["user_id"], s.batch_jobs, s.batch_size
    )
    goal = GOAL_BATCH_JOBS_S if target.throughput_goals else None
    await throughput(
        target, s, run, jobs=s.batch_jobs, clients=s.batch_clients, requests=requests, goal=goal
    )
    return run


# --- submit-to-start latency at light load ---------------------------------------------


async def _paced_submits(
    target: Target, user: str, count: int, rate: float
) -> list[dict[str, Any]]:
    """``count`` ``POST /v1/jobs`` at ``rate``/s on one connection; client send/recv times."""
    request = api.post(host_header(target), "/v1/jobs", user, api.noop_spec())
    conn = Connection(target.host, target.api_ports[0])
    await conn.connect()
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    try:
        for index in range(count):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.time()
            response = await conn.request(request)
            received = time.time()
            if response.status != 201:
                raise RuntimeError(f"POST /v1/jobs: {response.status} {response.body[:300]!r}")
            job = response.json()
            created = parse_rfc3339(job["created_at"]).timestamp()
            records.append(
                {"job_id": job["job_id"], "sent": sent, "received": received, "created_at": created}
            )
    finally:
        await conn.close()
    return records


SERIES = (
    "server", "client", "http_rtt", "created_to_scheduled", "scheduled_to_triggered",
    "triggered_to_started", "started_to_completed",
)  # fmt: skip


def _latency_series(
    records: Sequence[dict[str, Any]], runs: dict[str, RunTimes]
) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {k: [] for k in SERIES}
    for record in records:
        run = runs.get(record["job_id"])
        if run is None or run.started_at is None:
            continue
        started = run.started_at
        series["server"].append(started - record["created_at"])
        series["client"].append(started - record["sent"])
        series["http_rtt"].append(record["received"] - record["sent"])
        for key, a, b in (
            ("created_to_scheduled", record["created_at"], run.scheduled_for),
            ("scheduled_to_triggered", run.scheduled_for, run.triggered_at),
            ("triggered_to_started", run.triggered_at, started),
            ("started_to_completed", started, run.completed_at),
        ):
            if a is not None and b is not None:
                series[key].append(b - a)
    return series


async def latency(target: Target, s: Settings) -> ScenarioRun:
    """Jobs one at a time at ``latency_rate``/s; started_at - created_at (and - client send)."""
    user = new_user("latency")
    run = ScenarioRun("latency", raw={"user_id": user, "rate_per_s": s.latency_rate})
    baseline = await target.completed()
    count = s.latency_jobs
    counters_before = await target.counters()
    async with target.measuring(run, count):  # PostgreSQL's work per job, where measured
        before = target.cpu()
        async with asyncio.timeout(s.timeout_s):
            records = await _paced_submits(target, user, count, s.latency_rate)
        cpu = cpu_between(before, target.cpu())
        await wait_all_done(target, s, baseline, count, user)
    counters_after = await target.counters()
    series = _latency_series(records, await target.first_runs(user, [r["job_id"] for r in records]))
    summaries = {key: summary_ms(values) for key, values in series.items()}
    run.raw.update(
        jobs=count,
        latency_ms=summaries,
        runs_with_start=len(series["server"]),
        cpu_submit=cpu,
        first_jobs_ms=[round(v * 1000, 2) for v in series["server"][:20]],
    )  # fmt: skip  (first_jobs_ms: in submit order, where a cold start shows)
    server, client_side = summaries["server"], summaries["client"]
    goal = GOAL_START_P99_MS_PG if target.on_postgres else GOAL_START_P99_MS
    run.add("start - created_at p50", server["p50"], "ms")
    run.add("start - created_at p99", server["p99"], "ms", goal)
    run.add("start - created_at max", server["max"], "ms")
    run.add("start - client send p50", client_side["p50"], "ms")
    run.add("start - client send p99", client_side["p99"], "ms", goal)
    run.add("start - client send max", client_side["max"], "ms")
    run.add("POST /v1/jobs round trip p99", summaries["http_rtt"]["p99"], "ms")
    run.add("runs missing started_at", count - len(series["server"]), "count", GOAL_ZERO)
    run.add(f"{target.server_name} CPU (avg cores)", cpu["parts_cores"], "cores")
    run.add("other processes (avg cores)", cpu["other_cores"], "cores")
    if target.on_postgres:
        delta = pgwork.counter_deltas((counters_before, counters_after))
        run.raw["postgres_counters"] = delta
        pgwork.add_work_metrics(run, count, delta)
    return run


# --- fire lag ------------------------------------------------------------------------------


async def _create_due_at(
    target: Target, user: str, count: int, fire_at: float, size: int
) -> list[str]:
    """Create ``count`` jobs due at ``fire_at`` through the batch endpoint; their ids."""
    due = format_rfc3339(datetime.fromtimestamp(fire_at, UTC))
    requests = api.batch_requests(host_header(target), user, count, size, next_fire_at=due)
    conns = await connect(target, max(2, len(target.api_ports)))
    try:
        load = await drive(conns, requests, expect=201, keep_bodies=True)
    finally:
        await close_connections(conns)
    if load.first_error:
        raise RuntimeError(f"batch create failed: {load.first_error}")
    return [item["job_id"] for body in load.bodies for item in json.loads(body)["items"]]


def histogram_ms(values_s: Sequence[float], width_ms: int) -> dict[str, int]:
    """Counts per ``width_ms`` bin, keyed by the bin's lower edge in ms (sorted)."""
    counts: Counter[int] = Counter(math.floor(v * 1000 / width_ms) * width_ms for v in values_s)
    return {str(edge): counts[edge] for edge in sorted(counts)}


@dataclass(slots=True)
class Fires:
    """The first runs of jobs all due at ``fire_at``, as lags (seconds)."""

    lags: list[float] = field(default_factory=list)
    done_lags: list[float] = field(default_factory=list)
    claimed_ahead: list[float] = field(default_factory=list)
    per_worker: Counter[str] = field(default_factory=Counter)
    misplaced: int = 0
    missing: int = 0

    @staticmethod
    def of(runs: dict[str, RunTimes], job_ids: Sequence[str], fire_at: float) -> Fires:
        fires = Fires()
        for job_id in job_ids:
            run = runs.get(job_id)
            if run is None or run.scheduled_for is None or run.started_at is None:
                fires.missing += 1
                continue
            scheduled = run.scheduled_for
            fires.misplaced += abs(scheduled - fire_at) > 0.0005
            fires.lags.append(run.started_at - scheduled)
            if run.completed_at is not None:
                fires.done_lags.append(run.completed_at - scheduled)
            if run.triggered_at is not None:
                fires.claimed_ahead.append(scheduled - run.triggered_at)
            fires.per_worker[str(run.worker)] += 1
        return fires


async def firelag(target: Target, s: Settings) -> ScenarioRun:
    """N jobs all due at one whole second a few seconds ahead; started_at - scheduled_for."""
    user = new_user("firelag")
    run = ScenarioRun("firelag", raw={"user_id": user})
    baseline = await target.completed()
    hist_before = await target.fire_lag_histogram()
    count = s.firelag_jobs
    fire_at = float(math.ceil(time.time() + s.firelag_lead_s))
    window_start = target.cpu()
    job_ids = await _create_due_at(target, user, count, fire_at, s.batch_size)
    margin = fire_at - time.time()
    await asyncio.sleep(max(0.0, margin))
    before = target.cpu()
    await wait_all_done(target, s, baseline, count, user)
    end = target.cpu()
    hist_after = await target.fire_lag_histogram()
    fires = Fires.of(await target.first_runs(user, job_ids), job_ids, fire_at)
    lag_ms, done_ms = summary_ms(fires.lags), summary_ms(fires.done_lags)
    window = cpu_between(window_start, end)
    run.raw.update(
        jobs=count,
        fire_at=format_rfc3339(datetime.fromtimestamp(fire_at, UTC)),
        created_with_margin_s=margin,
        start_lag_ms=lag_ms,
        start_lag_histogram_5ms=histogram_ms(fires.lags, 5),
        completion_lag_ms=done_ms,
        triggered_before_scheduled_ms=summary_ms(fires.claimed_ahead),
        runs_per_worker=dict(fires.per_worker),
        misplaced=fires.misplaced,
        missing=fires.missing,
        cpu_after_fire=cpu_between(before, end),
        cpu_whole_scenario=window,
    )
    run.add("fire lag p50", lag_ms["p50"], "ms")
    run.add("fire lag p99", lag_ms["p99"], "ms", GOAL_FIRE_P99_MS)
    run.add("fire lag max", lag_ms["max"], "ms", GOAL_FIRE_MAX_MS)
    run.add("started early (negative lag)", sum(v < 0 for v in fires.lags), "runs", GOAL_ZERO)
    run.add("min lag", lag_ms["min"], "ms")
    run.add("completed - scheduled max", done_ms["max"], "ms")
    run.add("scheduled_for != requested", fires.misplaced, "runs", GOAL_ZERO)
    run.add("runs missing", fires.missing, "runs", GOAL_ZERO)
    if target.workers > 1:
        run.add("runs per worker min", min(fires.per_worker.values(), default=None), "runs")
        run.add("runs per worker max", max(fires.per_worker.values(), default=None), "runs")
    if hist_before is not None and hist_after is not None:
        run.raw["server_histogram"] = histogram = histogram_delta(hist_before, hist_after)
        run.add("server histogram mean lag", histogram["mean_ms"], "ms")
    run.add("creation margin before fire", margin, "s")
    run.add("other processes (avg cores)", window["other_cores"], "cores")
    return run


# --- the load generator's own ceiling ---------------------------------------------------


async def ceiling(_target: None, s: Settings) -> ScenarioRun:
    """The same ``POST /submit`` loop against a trivial canned-response server."""
    run = ScenarioRun("ceiling")
    count = s.ceiling_requests
    async with echo_server() as echo:
        request = api.post(f"{echo.host}:{echo.port}", "/submit", "x", api.noop_spec())
        conns = await open_connections(echo.host, [echo.port], s.http_clients)
        try:
            before = CpuSample.of_tree("server", echo.pid)
            async with asyncio.timeout(s.timeout_s):
                load = await drive(conns, [request] * count, expect=201)
            cpu = cpu_between(before, CpuSample.of_tree("server", echo.pid))
        finally:
            await close_connections(conns)
    client_s = cpu["client_cpu_s"]
    run.raw.update(requests=count, cpu=cpu, statuses=dict(load.statuses))
    run.add("requests/s vs trivial server", count / load.elapsed_s, "req/s")
    run.add("load-gen CPU per request", client_s / count * 1e6, "us")
    run.add("load-gen cores", cpu["client_cores"], "cores")
    run.add("trivial server cores", cpu["cores"].get("server"), "cores")
    run.add("load-gen max req/s per core", count / client_s if client_s else None, "req/s")
    return run


# --- the catalogue ---------------------------------------------------------------------------

EVERYWHERE = frozenset({"embedded", "distributed"})
CLUSTER = frozenset({"distributed"})

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("ceiling", ceiling, needs_target=False),
        Scenario("http", http),
        Scenario("batch", batch),
        Scenario("floor", floor),
        Scenario("floor-lease", floor),
        Scenario("latency", latency),
        Scenario("firelag", firelag),
        Scenario("future", future, profiles=CLUSTER, repeat="inside"),
        Scenario("failover", failover, profiles=CLUSTER, warm=False, repeat="once"),
    )
}
DEFAULTS = {
    "embedded": ("ceiling", "http", "batch", "latency", "firelag"),
    "distributed": ("http", "batch", "firelag", "future", "failover"),
}
