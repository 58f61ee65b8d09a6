"""The benchmark scenarios. Each takes a running server (a ``Target``) and returns a run."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench import api
from bench.cpu import CpuSnapshot, cpu_delta, io_delta
from bench.httpclient import Client, Connection, build_request
from bench.load import LoadResult, close_connections, drive, open_connections
from bench.model import Goal, ScenarioRun
from bench.server import Target, echo_server
from bench.stats import summary_ms

GOAL_HTTP_JOBS_S = Goal(">=", 2_000)
GOAL_BATCH_JOBS_S = Goal(">=", 8_000)
GOAL_START_P99_MS = Goal("<=", 10)
GOAL_FIRE_P99_MS = Goal("<=", 50)
GOAL_FIRE_MAX_MS = Goal("<=", 100)
GOAL_ZERO = Goal("<=", 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    http_jobs: int = 20_000
    http_clients: int = 16
    batch_jobs: int = 50_000
    batch_size: int = 1_000
    batch_clients: int = 4
    latency_jobs: int = 500
    latency_rate: float = 50.0
    firelag_jobs: int = 2_000
    firelag_lead_s: float = 3.0
    ceiling_requests: int = 60_000
    poll_interval_s: float = 0.05
    timeline_interval_s: float = 0.25
    timeout_s: float = 600.0
    completed_metric: api.MetricSelector
    fire_lag_metric: str = "job_fire_lag_seconds"
    verify: bool = True


def _user(scenario: str) -> str:
    return f"bench-{scenario}-{uuid.uuid4().hex[:8]}"


def _host_header(target: Target) -> str:
    return f"{target.host}:{target.port}"


# --- end-to-end throughput (http, batch) -----------------------------------------------


async def _throughput(
    target: Target,
    settings: Settings,
    run: ScenarioRun,
    *,
    jobs: int,
    clients: int,
    requests: Sequence[bytes],
    goal: Goal,
) -> None:
    user = run.raw["user_id"]
    client = Client(target.host, target.port, user_id=user)
    watcher = api.CompletionWatcher(client, settings.completed_metric)
    conns: list[Connection] = []
    load = LoadResult(started=0.0, finished=0.0)
    timeline: list[dict[str, float | None]] = []
    sampler: asyncio.Task[None] | None = None
    try:
        baseline = await watcher.completed()
        conns = await open_connections(target.host, target.port, clients)
        before = CpuSnapshot.take(target.pid)
        if settings.timeline_interval_s > 0:
            sampler = asyncio.create_task(
                _sample_timeline(target, settings, load, baseline, before, timeline)
            )
        async with asyncio.timeout(settings.timeout_s):
            await drive(conns, requests, expect=201, result=load)
        at_submit_end = CpuSnapshot.take(target.pid)
        completed_at_submit_end = await watcher.completed() - baseline
        executed, _ = await watcher.wait_for(
            baseline + jobs,
            deadline=load.started + settings.timeout_s,
            interval_s=settings.poll_interval_s,
        )
        done = await api.wait_persisted(
            client, deadline=load.started + settings.timeout_s, interval_s=settings.poll_interval_s
        )
        after = CpuSnapshot.take(target.pid)
    finally:
        if sampler is not None:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        await close_connections(conns)
    e2e_s = done - load.started
    cpu_all = cpu_delta(before, after, e2e_s)
    cpu_submit = cpu_delta(before, at_submit_end, load.elapsed_s)
    run.raw.update(
        timeline=timeline,
        server_io_e2e=io_delta(before, after),
        jobs=jobs,
        clients=clients,
        requests=len(requests),
        submit_s=load.elapsed_s,
        e2e_s=e2e_s,
        executed_s=executed - load.started,
        drain_after_submit_s=done - load.finished,
        completed_at_submit_end=completed_at_submit_end,
        statuses={str(k): v for k, v in load.statuses.items()},
        first_error=load.first_error,
        request_latency_ms=summary_ms(load.latencies_s),
        cpu_e2e=cpu_all,
        cpu_submit_phase=cpu_submit,
        metric_polls=watcher.polls,
    )
    _throughput_metrics(run, load, jobs=jobs, e2e_s=e2e_s, cpu=cpu_all, goal=goal)
    if settings.verify:
        run.raw["verified_completed_jobs"] = completed = await api.count_jobs(client, "COMPLETED")
        run.add("jobs COMPLETED (listed) - N", completed - jobs, "jobs", Goal(">=", 0))
    await client.close()


async def _sample_timeline(
    target: Target,
    settings: Settings,
    load: LoadResult,
    baseline: float,
    start: CpuSnapshot,
    out: list[dict[str, float | None]],
) -> None:
    """Every ``timeline_interval_s``: responses so far, runs completed, server CPU (cancelled)."""
    client = Client(target.host, target.port)
    watcher = api.CompletionWatcher(client, settings.completed_metric)
    origin = time.perf_counter()
    try:
        while True:
            await asyncio.sleep(settings.timeline_interval_s)
            completed = await watcher.completed() - baseline
            snap = CpuSnapshot.take(target.pid)
            server = (
                snap.server_s - start.server_s
                if snap.server_s is not None and start.server_s is not None
                else None
            )
            out.append(
                {
                    "t": round(time.perf_counter() - origin, 3),
                    "submitted": load.responses,
                    "completed": completed,
                    "server_cpu_s": server,
                }
            )
    finally:
        await client.close()


def _throughput_metrics(
    run: ScenarioRun,
    load: LoadResult,
    *,
    jobs: int,
    e2e_s: float,
    cpu: dict[str, float | None],
    goal: Goal,
) -> None:
    server_s, client_s = cpu["server_cpu_s"], cpu["client_cpu_s"]
    latency = run.raw["request_latency_ms"]
    run.add("end-to-end throughput", jobs / e2e_s, "jobs/s", goal)
    run.add("submit-only rate", jobs / load.elapsed_s, "jobs/s")
    run.add("request latency p50", latency["p50"], "ms")
    run.add("request latency p99", latency["p99"], "ms")
    run.add("drain after last submit", run.raw["drain_after_submit_s"], "s")
    run.add("non-201 responses", load.unexpected(201), "count", GOAL_ZERO)
    done_early = run.raw["completed_at_submit_end"]
    drain_s = run.raw["drain_after_submit_s"]
    run.add("execution rate while submitting", done_early / load.elapsed_s, "runs/s")
    run.add("execution rate after last submit", (jobs - done_early) / drain_s, "runs/s")
    run.add("server CPU per job", server_s / jobs * 1000 if server_s is not None else None, "ms")
    io = run.raw["server_io_e2e"]
    run.add("server bytes written per job", io["wchar"] / jobs if io else None, "B")
    sys_s = cpu["server_sys_cpu_s"]
    run.add("server CPU in kernel", sys_s / server_s * 100 if sys_s and server_s else None, "%")
    run.add("server CPU (avg cores)", cpu["server_cores"], "cores")
    run.add("load-gen CPU per job", client_s / jobs * 1000 if client_s is not None else None, "ms")
    run.add("load-gen CPU (avg cores)", cpu["client_cores"], "cores")
    run.add("machine busy (avg cores)", cpu["machine_busy_cores"], "cores")
    run.add("other processes (avg cores)", cpu["other_cores"], "cores")


async def scenario_http(target: Target, settings: Settings) -> ScenarioRun:
    """N no-op jobs, one ``POST /submit`` each, over ``http_clients`` keep-alive connections."""
    run = ScenarioRun("http", raw={"user_id": _user("http")})
    body = api.dumps(api.noop_spec())
    headers = {"X-User-ID": run.raw["user_id"]}
    request = build_request(
        "POST", "/submit", host=_host_header(target), headers=headers, body=body
    )
    jobs = settings.http_jobs
    await _throughput(
        target,
        settings,
        run,
        jobs=jobs,
        clients=settings.http_clients,
        requests=[request] * jobs,
        goal=GOAL_HTTP_JOBS_S,
    )
    return run


def _batch_requests(target: Target, user: str, jobs: int, size: int) -> list[bytes]:
    headers = {"X-User-ID": user}
    cache: dict[int, bytes] = {}
    requests = []
    for start in range(0, jobs, size):
        count = min(size, jobs - start)
        if count not in cache:
            body = api.dumps({"jobs": [api.noop_spec()] * count})
            cache[count] = build_request(
                "POST", "/v1/jobs:batch", host=_host_header(target), headers=headers, body=body
            )
        requests.append(cache[count])
    return requests


async def scenario_batch(target: Target, settings: Settings) -> ScenarioRun:
    """N no-op jobs through ``POST /v1/jobs:batch``, ``batch_size`` per request."""
    run = ScenarioRun("batch", raw={"user_id": _user("batch"), "batch_size": settings.batch_size})
    jobs = settings.batch_jobs
    requests = _batch_requests(target, run.raw["user_id"], jobs, settings.batch_size)
    await _throughput(
        target,
        settings,
        run,
        jobs=jobs,
        clients=settings.batch_clients,
        requests=requests,
        goal=GOAL_BATCH_JOBS_S,
    )
    return run


# --- submit-to-start latency at light load ---------------------------------------------


async def _paced_submits(
    target: Target, user: str, count: int, rate: float
) -> list[dict[str, Any]]:
    """``count`` ``POST /v1/jobs`` at ``rate``/s on one connection; client send/recv times."""
    request = build_request(
        "POST",
        "/v1/jobs",
        host=_host_header(target),
        headers={"X-User-ID": user},
        body=api.dumps(api.noop_spec()),
    )
    conn = Connection(target.host, target.port)
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
            records.append(
                {
                    "job_id": job["job_id"],
                    "sent": sent,
                    "received": received,
                    "created_at": api.parse_time(job["created_at"]),
                }
            )
    finally:
        await conn.close()
    return records


def _run_of(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first attempt (runs are newest first)."""
    return runs[-1] if runs else None


def _latency_series(
    records: Sequence[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]
) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {
        k: []
        for k in (
            "server",
            "client",
            "http_rtt",
            "created_to_scheduled",
            "scheduled_to_triggered",
            "triggered_to_started",
            "started_to_completed",
        )
    }
    for record in records:
        run = _run_of(runs.get(record["job_id"], []))
        if run is None or run.get("started_at") is None:
            continue
        times = {
            k: api.parse_time(run.get(k))
            for k in ("scheduled_for", "triggered_at", "started_at", "completed_at")
        }
        started = times["started_at"]
        assert started is not None
        series["server"].append(started - record["created_at"])
        series["client"].append(started - record["sent"])
        series["http_rtt"].append(record["received"] - record["sent"])
        for key, a, b in (
            ("created_to_scheduled", record["created_at"], times["scheduled_for"]),
            ("scheduled_to_triggered", times["scheduled_for"], times["triggered_at"]),
            ("triggered_to_started", times["triggered_at"], started),
            ("started_to_completed", started, times["completed_at"]),
        ):
            if a is not None and b is not None:
                series[key].append(b - a)
    return series


async def scenario_latency(target: Target, settings: Settings) -> ScenarioRun:
    """Jobs one at a time at ``latency_rate``/s; started_at - created_at (and - client send)."""
    user = _user("latency")
    run = ScenarioRun("latency", raw={"user_id": user, "rate_per_s": settings.latency_rate})
    client = Client(target.host, target.port, user_id=user)
    watcher = api.CompletionWatcher(client, settings.completed_metric)
    baseline = await watcher.completed()
    count = settings.latency_jobs
    before, started = CpuSnapshot.take(target.pid), time.perf_counter()
    async with asyncio.timeout(settings.timeout_s):
        records = await _paced_submits(target, user, count, settings.latency_rate)
    cpu = cpu_delta(before, CpuSnapshot.take(target.pid), time.perf_counter() - started)
    await watcher.wait_for(
        baseline + count,
        deadline=time.perf_counter() + settings.timeout_s,
        interval_s=settings.poll_interval_s,
    )
    await client.close()
    runs = await api.fetch_runs(target.host, target.port, user, [r["job_id"] for r in records])
    series = _latency_series(records, runs)
    summaries = {key: summary_ms(values) for key, values in series.items()}
    run.raw.update(
        jobs=count, latency_ms=summaries, runs_with_start=len(series["server"]), cpu_submit=cpu
    )
    server, client_side = summaries["server"], summaries["client"]
    run.add("start - created_at p50", server["p50"], "ms")
    run.add("start - created_at p99", server["p99"], "ms", GOAL_START_P99_MS)
    run.add("start - created_at max", server["max"], "ms")
    run.add("start - client send p50", client_side["p50"], "ms")
    run.add("start - client send p99", client_side["p99"], "ms", GOAL_START_P99_MS)
    run.add("start - client send max", client_side["max"], "ms")
    run.add("POST /v1/jobs round trip p99", summaries["http_rtt"]["p99"], "ms")
    run.add("runs missing started_at", count - len(series["server"]), "count", GOAL_ZERO)
    run.add("server CPU (avg cores)", cpu["server_cores"], "cores")
    run.add("other processes (avg cores)", cpu["other_cores"], "cores")
    return run


# --- fire lag ------------------------------------------------------------------------------


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _create_at(target: Target, user: str, count: int, fire_at: float, size: int) -> list[str]:
    """Create ``count`` jobs due at ``fire_at`` through the batch endpoint; their ids."""
    body_spec = api.noop_spec(next_fire_at=_rfc3339(fire_at))
    conns = await open_connections(target.host, target.port, 2)
    try:
        requests = [
            build_request(
                "POST",
                "/v1/jobs:batch",
                host=_host_header(target),
                headers={"X-User-ID": user},
                body=api.dumps({"jobs": [body_spec] * min(size, count - start)}),
            )
            for start in range(0, count, size)
        ]
        load = await drive(conns, requests, expect=201, keep_bodies=True)
    finally:
        await close_connections(conns)
    if load.first_error:
        raise RuntimeError(f"batch create failed: {load.first_error}")
    return [item["job_id"] for body in load.bodies for item in json.loads(body)["items"]]


def _lags(
    runs: dict[str, list[dict[str, Any]]], fire_at: float
) -> tuple[list[float], list[float], int, int]:
    """(start lags, completion lags, runs scheduled elsewhere than asked, runs missing)."""
    lags: list[float] = []
    done_lags: list[float] = []
    misplaced = missing = 0
    for job_runs in runs.values():
        run = _run_of(job_runs)
        scheduled = api.parse_time(run.get("scheduled_for")) if run else None
        started = api.parse_time(run.get("started_at")) if run else None
        if run is None or scheduled is None or started is None:
            missing += 1
            continue
        if abs(scheduled - fire_at) > 0.0005:
            misplaced += 1
        lags.append(started - scheduled)
        completed = api.parse_time(run.get("completed_at"))
        if completed is not None:
            done_lags.append(completed - scheduled)
    return lags, done_lags, misplaced, missing


def _histogram_ms(values_s: Sequence[float], width_ms: int) -> dict[str, int]:
    """Counts per ``width_ms`` bin, keyed by the bin's lower edge in ms (sorted)."""
    counts: dict[int, int] = {}
    for value in values_s:
        edge = math.floor(value * 1000 / width_ms) * width_ms
        counts[edge] = counts.get(edge, 0) + 1
    return {str(edge): counts[edge] for edge in sorted(counts)}


async def scenario_firelag(target: Target, settings: Settings) -> ScenarioRun:
    """N jobs all due at one whole second a few seconds ahead; started_at - scheduled_for."""
    user = _user("firelag")
    run = ScenarioRun("firelag", raw={"user_id": user})
    client = Client(target.host, target.port, user_id=user)
    watcher = api.CompletionWatcher(client, settings.completed_metric)
    baseline = await watcher.completed()
    hist_before = api.histogram_totals(await watcher.metrics(), settings.fire_lag_metric)
    count = settings.firelag_jobs
    fire_at = float(math.ceil(time.time() + settings.firelag_lead_s))
    window_start, window_t0 = CpuSnapshot.take(target.pid), time.perf_counter()
    job_ids = await _create_at(target, user, count, fire_at, settings.batch_size)
    margin = fire_at - time.time()
    await asyncio.sleep(max(0.0, margin))
    before = CpuSnapshot.take(target.pid)
    t0 = time.perf_counter()
    done, _ = await watcher.wait_for(
        baseline + count, deadline=t0 + settings.timeout_s, interval_s=settings.poll_interval_s
    )
    end = CpuSnapshot.take(target.pid)
    cpu = cpu_delta(before, end, done - t0)
    window = cpu_delta(window_start, end, done - window_t0)
    hist_after = api.histogram_totals(await watcher.metrics(), settings.fire_lag_metric)
    await client.close()
    runs = await api.fetch_runs(target.host, target.port, user, job_ids)
    lags, done_lags, misplaced, missing = _lags(runs, fire_at)
    lag_ms, done_ms = summary_ms(lags), summary_ms(done_lags)
    run.raw.update(
        jobs=count,
        fire_at=_rfc3339(fire_at),
        created_with_margin_s=margin,
        start_lag_ms=lag_ms,
        start_lag_histogram_5ms=_histogram_ms(lags, 5),
        completion_lag_ms=done_ms,
        misplaced=misplaced,
        missing=missing,
        server_histogram=api.histogram_delta(hist_before, hist_after),
        cpu_after_fire=cpu,
        cpu_whole_scenario=window,
    )
    run.add("fire lag p50", lag_ms["p50"], "ms")
    run.add("fire lag p99", lag_ms["p99"], "ms", GOAL_FIRE_P99_MS)
    run.add("fire lag max", lag_ms["max"], "ms", GOAL_FIRE_MAX_MS)
    run.add("started early (negative lag)", sum(1 for v in lags if v < 0), "runs", GOAL_ZERO)
    run.add("min lag", lag_ms["min"], "ms")
    run.add("completed - scheduled max", done_ms["max"], "ms")
    run.add("scheduled_for != requested", misplaced, "runs", GOAL_ZERO)
    run.add("runs missing", missing, "runs", GOAL_ZERO)
    run.add("server histogram mean lag", run.raw["server_histogram"]["mean_ms"], "ms")
    run.add("creation margin before fire", margin, "s")
    run.add("other processes (avg cores)", window["other_cores"], "cores")
    return run


# --- the load generator's own ceiling ---------------------------------------------------


async def scenario_ceiling(_target: Target | None, settings: Settings) -> ScenarioRun:
    """The same ``POST /submit`` loop against a trivial canned-response server."""
    run = ScenarioRun("ceiling")
    requests_count = settings.ceiling_requests
    async with echo_server() as echo:
        body = api.dumps(api.noop_spec())
        request = build_request(
            "POST", "/submit", host=_host_header(echo), headers={"X-User-ID": "x"}, body=body
        )
        conns = await open_connections(echo.host, echo.port, settings.http_clients)
        try:
            before = CpuSnapshot.take(echo.pid)
            async with asyncio.timeout(settings.timeout_s):
                load = await drive(conns, [request] * requests_count, expect=201)
            cpu = cpu_delta(before, CpuSnapshot.take(echo.pid), load.elapsed_s)
        finally:
            await close_connections(conns)
    client_s = cpu["client_cpu_s"] or 0.0
    run.raw.update(requests=requests_count, cpu=cpu, statuses=dict(load.statuses))
    run.add("requests/s vs trivial server", requests_count / load.elapsed_s, "req/s")
    run.add("load-gen CPU per request", client_s / requests_count * 1e6, "us")
    run.add("load-gen cores", cpu["client_cores"], "cores")
    run.add("trivial server cores", cpu["server_cores"], "cores")
    run.add("load-gen max req/s per core", requests_count / client_s if client_s else None, "req/s")
    return run


ScenarioFn = Callable[[Target, Settings], Awaitable[ScenarioRun]]

SCENARIOS: dict[str, ScenarioFn] = {
    "ceiling": scenario_ceiling,
    "http": scenario_http,
    "batch": scenario_batch,
    "latency": scenario_latency,
    "firelag": scenario_firelag,
}
NEEDS_SERVER = {"http", "batch", "latency", "firelag"}
DEFAULT_SCENARIOS = ("ceiling", "http", "batch", "latency", "firelag")
