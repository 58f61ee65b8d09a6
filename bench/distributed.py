"""``python -m bench --profile distributed``: Chronoq as separate role processes over PostgreSQL.

A private PostgreSQL server (fsync on, synchronous_commit on: durable, like
production) lives for the whole profile; every scenario run gets a fresh
database and a fresh cluster (``bench.cluster``). The load generator is the same
raw HTTP client as the embedded profile, its connections spread over the api
processes; completion is read from the store directly (asyncpg), not over HTTP.

Scenarios: ``http``, ``batch`` (end-to-end throughput), ``firelag``, ``future``
(throughput with many pending future jobs in the store) and ``failover``
(SIGKILL of the leader coordinator, then of a picker).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench import report
from bench.api import dumps, noop_spec
from bench.cluster import POSTGRES, ROLES, BenchPostgres, ClusterEnv, ClusterSize, bench_cluster
from bench.cpu import SystemCpu, self_cpu_s, system_cpu
from bench.httpclient import Connection, build_request
from bench.load import LoadResult, close_connections, drive
from bench.model import Goal, ScenarioRun
from bench.scenarios import GOAL_FIRE_MAX_MS, GOAL_FIRE_P99_MS, GOAL_ZERO, Settings
from bench.stats import median, summary_ms

DIST_SCENARIOS = ("http", "batch", "firelag", "future", "failover")
DEFAULT_FUTURE_SIZES = (0, 10_000, 100_000, 1_000_000)
_FUTURE_CHUNK = 100_000
_LEASE = "chronoq"

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

TIMELINE_MIN_INTERVAL_S = 1.0

USER_COMPLETED_JOBS = "SELECT count(*) FROM jobs WHERE user_id = $1 AND status = 'COMPLETED'"

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

INSERT_FUTURE = (
    "INSERT INTO jobs (job_id, user_id, project_id, payload, payload_ref, payload_size,"
    " cron_schedule, timezone, next_fire_at, shard_id, status, max_retries, timeout_seconds,"
    " created_at, updated_at)"
    " SELECT (lpad(to_hex($1::bigint + g), 12, '0') || '7'"
    " || substr(md5(random()::text), 1, 3) || '8'"
    " || substr(md5(random()::text), 1, 15))::uuid,"
    " $4, 'bench', 'noop', NULL, 4, NULL, NULL,"
    " $2::timestamptz + g * interval '1 millisecond', (g % $5)::int, 'PENDING', 0, NULL,"
    " $3::timestamptz, $3::timestamptz"
    " FROM generate_series($6::bigint, $7::bigint) AS g"
)
"""``$7 - $6 + 1`` pending one-shot jobs due in a year (1 ms apart), UUIDv7 ids from
``$1`` ms (like the api's), shard ``g % shard_count``: evenly spread over the shards."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DistSettings:
    base: Settings
    size: ClusterSize = field(default_factory=ClusterSize)
    extra: tuple[str, ...] = ()
    future_sizes: tuple[int, ...] = DEFAULT_FUTURE_SIZES
    future_jobs: int = 20_000
    failover_rounds: int = 3
    pg_sample_s: float = 0.0
    pg_statements: bool = False
    idle_s: float = 2.0
    warmup_jobs: int = 5_000
    repeat: int = 1
    keep_data: bool = False


def _user(scenario: str) -> str:
    return f"bench-{scenario}-{uuid.uuid4().hex[:8]}"


def _short(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


# --- CPU snapshots ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snap:
    """Every role's and PostgreSQL's CPU seconds, the load generator's, the machine's."""

    at: float
    roles: dict[str, float]
    client_s: float
    system: SystemCpu

    @staticmethod
    def take(env: ClusterEnv) -> Snap:
        return Snap(time.perf_counter(), env.role_cpu(), self_cpu_s(), system_cpu())


def cpu_between(before: Snap, after: Snap) -> dict[str, Any]:
    wall = after.at - before.at
    roles = {k: after.roles.get(k, 0.0) - v for k, v in before.roles.items()}
    client = after.client_s - before.client_s
    total = after.system.total_ticks - before.system.total_ticks
    busy = after.system.busy_ticks - before.system.busy_ticks
    ncpu = len(os.sched_getaffinity(0))
    machine = busy / total * ncpu if total > 0 else None
    ours = sum(roles.values()) + client
    return {
        "wall_s": wall,
        "cpu_s": roles,
        "cores": {k: v / wall for k, v in roles.items()} if wall > 0 else {},
        "client_cpu_s": client,
        "client_cores": client / wall if wall > 0 else None,
        "cluster_cores": sum(roles.values()) / wall if wall > 0 else None,
        "machine_busy_cores": machine,
        "other_cores": machine - ours / wall if machine is not None and wall > 0 else None,
    }


async def pg_counters(env: ClusterEnv) -> dict[str, int]:
    row = await env.db.fetchrow(PG_COUNTERS)
    return {
        "wal_bytes": int(row[0]),
        "txid": int(row[1]),
        "wal_sync": int(row[2] or 0),
        "wal_fpi": int(row[3] or 0),
        "xact_commit": int(row[4] or 0),
    }


def counters_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {k: after[k] - before[k] for k in before}
    delta["write_transactions"] = delta.pop("txid") - 1  # txid_current() takes one
    return delta


async def idle_cpu(env: ClusterEnv, seconds: float) -> dict[str, Any]:
    """What the settled, idle cluster burns (heartbeats, leases, polls)."""
    before = Snap.take(env)
    await asyncio.sleep(seconds)
    return cpu_between(before, Snap.take(env))


class ActivitySampler:
    """Samples PostgreSQL's active backends of the cluster's database (a poor man's profile)."""

    def __init__(self, env: ClusterEnv, interval_s: float) -> None:
        self.env = env
        self.interval_s = interval_s
        self.samples = 0
        self.counts: Counter[tuple[str, str]] = Counter()

    async def run(self) -> None:
        async with self.env.db.acquire() as conn:
            while True:
                for wait, query in await conn.fetch(PG_ACTIVITY):
                    self.counts[(wait, query)] += 1
                self.samples += 1
                await asyncio.sleep(self.interval_s)

    def summary(self) -> dict[str, Any]:
        top = [
            {"wait": wait, "query": query, "share_of_samples": count / self.samples}
            for (wait, query), count in self.counts.most_common(15)
        ]
        active = sum(self.counts.values()) / self.samples if self.samples else None
        return {"samples": self.samples, "avg_active_backends": active, "top": top}


# --- end-to-end throughput ----------------------------------------------------------------


async def _connections(env: ClusterEnv, count: int) -> list[Connection]:
    """``count`` keep-alive connections spread round-robin over the api processes."""
    ports = env.api_ports
    conns = [Connection(env.host, ports[i % len(ports)]) for i in range(count)]
    await asyncio.gather(*(conn.connect() for conn in conns))
    return conns


async def _wait_completed(
    env: ClusterEnv, target: int, *, deadline: float, interval_s: float
) -> tuple[float, int]:
    """Poll until nothing is outstanding and COMPLETED runs >= target; (when, polls)."""
    polls = 0
    while True:
        polls += 1
        if not await env.db.fetchval(BUSY) and await env.db.fetchval(COMPLETED) >= target:
            return time.perf_counter(), polls
        if time.perf_counter() > deadline:
            left = tuple(await env.db.fetchrow(OUTSTANDING))
            raise TimeoutError(f"work outstanding at the deadline (due, queued, running): {left}")
        await asyncio.sleep(interval_s)


async def _timeline(
    env: ClusterEnv, interval_s: float, load: LoadResult, start: Snap, out: list[dict[str, Any]]
) -> None:
    """Every ``interval_s``: responses so far, work outstanding, CPU per role (cancelled)."""
    async with env.db.acquire() as conn:
        while True:
            await asyncio.sleep(interval_s)
            due, queued, running = await conn.fetchrow(OUTSTANDING)
            snap = Snap.take(env)
            out.append(
                {
                    "t": round(snap.at - start.at, 3),
                    "submitted": load.responses,
                    "due": due,
                    "queued": queued,
                    "running": running,
                    "cpu_s": {k: round(v - start.roles[k], 3) for k, v in snap.roles.items()},
                }
            )


async def _cancel(*tasks: asyncio.Task[None] | None) -> None:
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)


async def _throughput(
    env: ClusterEnv,
    ds: DistSettings,
    run: ScenarioRun,
    *,
    jobs: int,
    clients: int,
    requests: Sequence[bytes],
) -> None:
    s = ds.base
    load = LoadResult(started=0.0, finished=0.0)
    timeline: list[dict[str, Any]] = []
    sampler = activity_task = None
    activity = ActivitySampler(env, ds.pg_sample_s) if ds.pg_sample_s > 0 else None
    conns = await _connections(env, clients)
    try:
        baseline = await env.db.fetchval(COMPLETED)
        if ds.pg_statements:
            await env.db.execute("SELECT pg_stat_statements_reset()")
        counters_before = await pg_counters(env)
        before = Snap.take(env)
        if s.timeline_interval_s > 0:
            period = max(s.timeline_interval_s, TIMELINE_MIN_INTERVAL_S)
            sampler = asyncio.create_task(_timeline(env, period, load, before, timeline))
        if activity is not None:
            activity_task = asyncio.create_task(activity.run())
        async with asyncio.timeout(s.timeout_s):
            await drive(conns, requests, expect=201, result=load)
        at_submit_end = Snap.take(env)
        completed_at_submit_end = await env.db.fetchval(COMPLETED) - baseline
        done, polls = await _wait_completed(
            env,
            baseline + jobs,
            deadline=load.started + s.timeout_s,
            interval_s=s.poll_interval_s,
        )
        after = Snap.take(env)
        counters_after = await pg_counters(env)
        if ds.pg_statements:
            run.raw["pg_statements"] = await _statements(env, jobs)
    finally:
        await _cancel(sampler, activity_task)
        await close_connections(conns)
    e2e_s = done - load.started
    cpu = cpu_between(before, after)
    cpu_submit = cpu_between(before, at_submit_end)
    run.raw.update(
        jobs=jobs,
        clients=clients,
        api_processes=len(env.api_ports),
        requests=len(requests),
        submit_s=load.elapsed_s,
        e2e_s=e2e_s,
        drain_after_submit_s=done - load.finished,
        completed_at_submit_end=completed_at_submit_end,
        completion_polls=polls,
        statuses={str(k): v for k, v in load.statuses.items()},
        first_error=load.first_error,
        request_latency_ms=summary_ms(load.latencies_s),
        cpu_e2e=cpu,
        cpu_submit_phase=cpu_submit,
        postgres_counters=counters_delta(counters_before, counters_after),
        timeline=timeline,
    )
    if activity is not None:
        run.raw["pg_activity"] = activity.summary()
    _throughput_metrics(run, load, jobs=jobs, e2e_s=e2e_s, cpu=cpu)
    if s.verify:
        user = run.raw["user_id"]
        completed = await env.db.fetchval(USER_COMPLETED_JOBS, user)
        run.raw["verified_completed_jobs"] = completed
        run.add("jobs COMPLETED (store) - N", completed - jobs, "jobs", Goal(">=", 0))


async def _statements(env: ClusterEnv, jobs: int) -> list[dict[str, Any]]:
    rows = await env.db.fetch(PG_STATEMENTS)
    keys = ("calls", "exec_ms", "plan_ms", "rows", "blks_hit", "blks_read", "blks_dirtied")
    out = []
    for row in rows:
        item: dict[str, Any] = dict(zip(keys, row[:7], strict=True))
        item["wal_bytes"] = int(row[7] or 0)
        item["exec_us_per_job"] = row[1] * 1000 / jobs
        item["query"] = row[8]
        out.append(item)
    return out


def _throughput_metrics(
    run: ScenarioRun, load: LoadResult, *, jobs: int, e2e_s: float, cpu: dict[str, Any]
) -> None:
    latency = run.raw["request_latency_ms"]
    run.add("end-to-end throughput", jobs / e2e_s, "jobs/s")
    run.add("submit-only rate", jobs / load.elapsed_s, "jobs/s")
    run.add("request latency p50", latency["p50"], "ms")
    run.add("request latency p99", latency["p99"], "ms")
    run.add("drain after last submit", run.raw["drain_after_submit_s"], "s")
    run.add("non-201 responses", load.unexpected(201), "count", GOAL_ZERO)
    done_early = run.raw["completed_at_submit_end"]
    drain_s = run.raw["drain_after_submit_s"]
    run.add("execution rate while submitting", done_early / load.elapsed_s, "runs/s")
    run.add(
        "execution rate after last submit",
        (jobs - done_early) / drain_s if drain_s > 0 else None,
        "runs/s",
    )
    cpu_s, cores = cpu["cpu_s"], cpu["cores"]
    for role in (*ROLES, POSTGRES):
        run.add(f"CPU per job: {role}", cpu_s[role] / jobs * 1000, "ms")
    run.add("CPU per job: all roles + PostgreSQL", sum(cpu_s.values()) / jobs * 1000, "ms")
    run.add("CPU per job: load generator", cpu["client_cpu_s"] / jobs * 1000, "ms")
    for role in (*ROLES, POSTGRES):
        run.add(f"cores: {role}", cores.get(role), "cores")
    run.add("cores: load generator", cpu["client_cores"], "cores")
    run.add("machine busy (avg cores)", cpu["machine_busy_cores"], "cores")
    run.add("other processes (avg cores)", cpu["other_cores"], "cores")
    counters = run.raw["postgres_counters"]
    run.add("PostgreSQL WAL bytes per job", counters["wal_bytes"] / jobs, "B")
    run.add("PostgreSQL write transactions per job", counters["write_transactions"] / jobs, "tx")


def _submit_requests(env: ClusterEnv, user: str, jobs: int) -> list[bytes]:
    request = build_request(
        "POST",
        "/submit",
        host=f"{env.host}:{env.api_ports[0]}",
        headers={"X-User-ID": user},
        body=dumps(noop_spec()),
    )
    return [request] * jobs


def _batch_requests(env: ClusterEnv, user: str, jobs: int, size: int, **spec: Any) -> list[bytes]:
    cache: dict[int, bytes] = {}
    requests = []
    for start in range(0, jobs, size):
        count = min(size, jobs - start)
        if count not in cache:
            cache[count] = build_request(
                "POST",
                "/v1/jobs:batch",
                host=f"{env.host}:{env.api_ports[0]}",
                headers={"X-User-ID": user},
                body=dumps({"jobs": [noop_spec(**spec)] * count}),
            )
        requests.append(cache[count])
    return requests


async def dist_http(env: ClusterEnv, ds: DistSettings) -> ScenarioRun:
    """N ``POST /submit`` over ``http_clients`` connections spread over the api processes."""
    run = ScenarioRun("http", raw={"user_id": _user("http")})
    jobs = ds.base.http_jobs
    requests = _submit_requests(env, run.raw["user_id"], jobs)
    await _throughput(env, ds, run, jobs=jobs, clients=ds.base.http_clients, requests=requests)
    return run


async def dist_batch(env: ClusterEnv, ds: DistSettings) -> ScenarioRun:
    """N jobs through ``POST /v1/jobs:batch``, ``batch_size`` per request."""
    s = ds.base
    run = ScenarioRun("batch", raw={"user_id": _user("batch"), "batch_size": s.batch_size})
    requests = _batch_requests(env, run.raw["user_id"], s.batch_jobs, s.batch_size)
    await _throughput(env, ds, run, jobs=s.batch_jobs, clients=s.batch_clients, requests=requests)
    return run


# --- fire lag -----------------------------------------------------------------------------

FIRELAG_RUNS = (
    "SELECT extract(epoch FROM scheduled_for)::float8, extract(epoch FROM started_at)::float8,"
    " extract(epoch FROM completed_at)::float8, extract(epoch FROM triggered_at)::float8,"
    " worker_id FROM job_runs WHERE user_id = $1 AND attempt = 1"
)
USER_RUNS_COMPLETED = "SELECT count(*) FROM job_runs WHERE user_id = $1 AND status = 'COMPLETED'"


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _create_due_at(env: ClusterEnv, user: str, count: int, fire_at: float, size: int) -> None:
    requests = _batch_requests(env, user, count, size, next_fire_at=_rfc3339(fire_at))
    conns = await _connections(env, max(2, len(env.api_ports)))
    try:
        load = await drive(conns, requests, expect=201)
    finally:
        await close_connections(conns)
    if load.first_error:
        raise RuntimeError(f"batch create failed: {load.first_error}")


async def dist_firelag(env: ClusterEnv, ds: DistSettings) -> ScenarioRun:
    """N jobs all due at one whole second a few seconds ahead; started_at - scheduled_for."""
    s = ds.base
    user = _user("firelag")
    run = ScenarioRun("firelag", raw={"user_id": user})
    count = s.firelag_jobs
    fire_at = float(math.ceil(time.time() + s.firelag_lead_s))
    await _create_due_at(env, user, count, fire_at, s.batch_size)
    margin = fire_at - time.time()
    await asyncio.sleep(max(0.0, margin))
    before = Snap.take(env)
    deadline = time.perf_counter() + s.timeout_s
    while await env.db.fetchval(USER_RUNS_COMPLETED, user) < count:
        if time.perf_counter() > deadline:
            raise TimeoutError("fire-lag runs not all COMPLETED by the deadline")
        await asyncio.sleep(s.poll_interval_s)
    cpu = cpu_between(before, Snap.take(env))
    rows = await env.db.fetch(FIRELAG_RUNS, user)
    lags = [r[1] - r[0] for r in rows if r[1] is not None]
    done_lags = [r[2] - r[0] for r in rows if r[2] is not None]
    claimed_ahead = [r[0] - r[3] for r in rows]
    misplaced = sum(1 for r in rows if abs(r[0] - fire_at) > 0.0005)
    per_worker = Counter(str(r[4]) for r in rows)
    lag_ms, done_ms = summary_ms(lags), summary_ms(done_lags)
    run.raw.update(
        jobs=count,
        fire_at=_rfc3339(fire_at),
        created_with_margin_s=margin,
        start_lag_ms=lag_ms,
        start_lag_histogram_5ms=_histogram_ms(lags, 5),
        completion_lag_ms=done_ms,
        triggered_before_scheduled_ms=summary_ms(claimed_ahead),
        runs_per_worker=dict(per_worker),
        cpu_after_fire=cpu,
    )
    run.add("fire lag p50", lag_ms["p50"], "ms")
    run.add("fire lag p99", lag_ms["p99"], "ms", GOAL_FIRE_P99_MS)
    run.add("fire lag max", lag_ms["max"], "ms", GOAL_FIRE_MAX_MS)
    run.add("started early (negative lag)", sum(1 for v in lags if v < 0), "runs", GOAL_ZERO)
    run.add("min lag", lag_ms["min"], "ms")
    run.add("completed - scheduled max", done_ms["max"], "ms")
    run.add("scheduled_for != requested", misplaced, "runs", GOAL_ZERO)
    run.add("runs missing", count - len(lags), "runs", GOAL_ZERO)
    run.add("runs per worker min", min(per_worker.values()) if per_worker else None, "runs")
    run.add("runs per worker max", max(per_worker.values()) if per_worker else None, "runs")
    run.add("creation margin before fire", margin, "s")
    run.add("other processes (avg cores)", cpu["other_cores"], "cores")
    return run


def _histogram_ms(values_s: Sequence[float], width_ms: int) -> dict[str, int]:
    counts: Counter[int] = Counter(math.floor(v * 1000 / width_ms) * width_ms for v in values_s)
    return {str(edge): counts[edge] for edge in sorted(counts)}


# --- many pending future jobs -------------------------------------------------------------


async def insert_future(env: ClusterEnv, have: int, want: int) -> dict[str, float]:
    """Top the store up from ``have`` to ``want`` future jobs (directly, in chunks); then
    VACUUM ANALYZE and CHECKPOINT so the measured run inherits neither dirty pages nor an
    autovacuum of the new rows. Seconds per step."""
    now = datetime.now(UTC)
    due = now.replace(year=now.year + 1)
    base_ms = int(now.timestamp() * 1000) - want  # ids older than any the api hands out
    timings = {"insert_s": 0.0, "vacuum_analyze_s": 0.0, "checkpoint_s": 0.0}
    started = time.perf_counter()
    for first in range(have, want, _FUTURE_CHUNK):
        last = min(first + _FUTURE_CHUNK, want) - 1
        await env.db.execute(
            INSERT_FUTURE, base_ms, due, now, "bench-future", env.shard_count, first, last
        )
        print(f"[bench]   future jobs: {last + 1:,}/{want:,}", file=sys.stderr, flush=True)
    timings["insert_s"] = time.perf_counter() - started
    for key, statement in (
        ("vacuum_analyze_s", "VACUUM ANALYZE jobs"),
        ("checkpoint_s", "CHECKPOINT"),
    ):
        t0 = time.perf_counter()
        await env.db.execute(statement)
        timings[key] = time.perf_counter() - t0
    return timings


async def dist_future(env: ClusterEnv, ds: DistSettings) -> dict[str, list[ScenarioRun]]:
    """A fixed batch of immediate jobs, e2e, with 0, 10k, 100k, 1M... future jobs pending."""
    s = ds.base
    out: dict[str, list[ScenarioRun]] = {}
    have = 0
    for size in ds.future_sizes:
        key = f"future-{_short(size)}"
        print(f"[bench] {key}: setting up {size:,} future jobs ...", file=sys.stderr, flush=True)
        timings = await insert_future(env, have, size) if size > have else {}
        have = max(have, size)
        pending = await env.db.fetchval(
            "SELECT count(*) FROM jobs WHERE user_id = 'bench-future' AND status = 'PENDING'"
        )
        runs: list[ScenarioRun] = []
        for index in range(ds.repeat):
            print(f"[bench] {key} run {index + 1}/{ds.repeat} ...", file=sys.stderr, flush=True)
            run = ScenarioRun(key, raw={"user_id": _user(key), "future_jobs": pending, **timings})
            try:
                requests = _batch_requests(env, run.raw["user_id"], ds.future_jobs, s.batch_size)
                await _throughput(
                    env, ds, run, jobs=ds.future_jobs, clients=s.batch_clients, requests=requests
                )
                run.add("future jobs pending in the store", pending, "jobs")
                if timings:
                    run.add("setup: insert future jobs (not timed)", timings["insert_s"], "s")
                    run.add(
                        "setup: vacuum + checkpoint",
                        timings["vacuum_analyze_s"] + timings["checkpoint_s"],
                        "s",
                    )
            except Exception as exc:
                traceback.print_exc()
                run.error = f"{type(exc).__name__}: {exc}"
            runs.append(run)
            _progress(run)
        out[key] = runs
    return out


# --- failover -----------------------------------------------------------------------------

LEASE_ROW = (
    "SELECT holder, epoch, expires_at > now(), extract(epoch FROM expires_at - now())::float8"
    " FROM leader_lease WHERE name = $1"
)
MEMBER_ROW = (
    "SELECT pid, extract(epoch FROM now() - heartbeat_at)::float8 FROM members WHERE member_id = $1"
)
SHARDS_OF = "SELECT count(*) FILTER (WHERE owner = $1), count(*) FROM shard_assignments"
OWNERS = "SELECT owner, count(*) FROM shard_assignments GROUP BY owner ORDER BY 2 DESC, 1"
INSERT_PROBE = (
    "INSERT INTO jobs (job_id, user_id, project_id, payload, payload_ref, payload_size,"
    " cron_schedule, timezone, next_fire_at, shard_id, status, max_retries, timeout_seconds,"
    " created_at, updated_at) VALUES ($1, $2, 'bench', 'noop', NULL, 4, NULL, NULL,"
    " to_timestamp($3), $4, 'PENDING', 0, NULL, now(), now())"
)
PROBE_STARTED = (
    "SELECT extract(epoch FROM started_at)::float8 FROM job_runs"
    " WHERE job_id = $1 AND started_at IS NOT NULL"
)


async def _wait_member_up(env: ClusterEnv, node: str, pid: int | None, timeout_s: float) -> None:
    """Until ``node`` heartbeats from process ``pid`` (a respawned member is up)."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        row = await env.db.fetchrow(MEMBER_ROW, node)
        if row is not None and row[0] == pid and row[1] < env.member_ttl:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{node} (pid {pid}) did not heartbeat within {timeout_s:.0f}s")


async def _poll_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.005
) -> float:
    """perf_counter when ``check()`` first holds."""
    deadline = time.perf_counter() + timeout_s
    while not await check():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval_s)
    return time.perf_counter()


async def _leader_round(env: ClusterEnv, timeout_s: float) -> dict[str, Any]:
    holder, epoch, live, left = await env.db.fetchrow(LEASE_ROW, _LEASE)
    member = env.member_by_node(holder) if live else None
    if member is None:
        raise RuntimeError(f"no live leader to kill (lease: {holder!r}, live={live})")
    killed_at = env.kill(member)
    state: dict[str, Any] = {}

    async def taken_over() -> bool:
        row = await env.db.fetchrow(LEASE_ROW, _LEASE)
        state.update(holder=row[0], epoch=row[1])
        return row[0] is not None and row[0] != holder and bool(row[2])

    took_at = await _poll_until(taken_over, timeout_s)
    env.respawn(member)  # back as a standby for the next round
    await _wait_member_up(env, holder, member.pid, timeout_s)
    return {
        "killed": holder,
        "old_epoch": epoch,
        "lease_left_at_kill_s": left,
        "new_leader": state["holder"],
        "new_epoch": state["epoch"],
        "failover_s": took_at - killed_at,
    }


async def _picker_round(env: ClusterEnv, timeout_s: float) -> dict[str, Any]:
    owners = await env.db.fetch(OWNERS)
    victim_node = owners[0][0]
    member = env.member_by_node(victim_node)
    if member is None:
        raise RuntimeError(f"shard owner {victim_node!r} is not a cluster member")
    shard = await env.db.fetchval(
        "SELECT min(shard_id) FROM shard_assignments WHERE owner = $1", victim_node
    )
    _, heartbeat_age = await env.db.fetchrow(MEMBER_ROW, victim_node)
    killed_at = env.kill(member)
    kill_epoch = time.time()
    # A job due at the kill instant in one of the dead picker's shards: when does it start?
    probe = str(uuid.uuid4())
    await env.db.execute(INSERT_PROBE, probe, "bench-failover", kill_epoch, shard)

    async def reassigned() -> bool:
        mine, total = await env.db.fetchrow(SHARDS_OF, victim_node)
        return bool(mine == 0 and total == env.shard_count)

    done_at = await _poll_until(reassigned, timeout_s, 0.01)
    started: list[float] = []

    async def probe_started() -> bool:
        value = await env.db.fetchval(PROBE_STARTED, probe)
        if value is not None:
            started.append(value)
        return value is not None

    await _poll_until(probe_started, timeout_s, 0.01)
    env.respawn(member)
    await _wait_member_up(env, victim_node, member.pid, timeout_s)
    await env.wait_settled(timeout_s)  # shards spread over every picker again
    return {
        "killed": victim_node,
        "shards_owned": owners[0][1],
        "heartbeat_age_at_kill_s": heartbeat_age,
        "reassigned_s": done_at - killed_at,
        "probe_fire_delay_s": started[0] - kill_epoch,
    }


async def dist_failover(env: ClusterEnv, ds: DistSettings) -> ScenarioRun:
    """SIGKILL the leader coordinator (rounds times), then a picker (rounds times).

    Each needs a survivor to take over: with one coordinator (or picker) that part is
    skipped (noted in the JSON).
    """
    run = ScenarioRun("failover")
    timeout_s = min(ds.base.timeout_s, 120.0)
    leaders: list[dict[str, Any]] = []
    pickers: list[dict[str, Any]] = []
    rounds = ds.failover_rounds
    if env.size.coordinators < 2 or env.size.pickers < 2:
        run.raw["skipped"] = "a role with one process has no survivor to fail over to"
    for index in range(rounds if env.size.coordinators >= 2 else 0):
        await env.wait_settled(timeout_s)
        await asyncio.sleep(1.0)  # a full campaign tick: every standby is campaigning
        leaders.append(await _leader_round(env, timeout_s))
        print(f"[bench]   leader kill {index + 1}: {leaders[-1]}", file=sys.stderr, flush=True)
    for index in range(rounds if env.size.pickers >= 2 else 0):
        await env.wait_settled(timeout_s)
        pickers.append(await _picker_round(env, timeout_s))
        print(f"[bench]   picker kill {index + 1}: {pickers[-1]}", file=sys.stderr, flush=True)
    run.raw.update(leader_rounds=leaders, picker_rounds=pickers, events=env.events)
    if leaders:
        _leader_metrics(run, leaders)
    if pickers:
        reassigned = [r["reassigned_s"] for r in pickers]
        for index, value in enumerate(reassigned):
            run.add(f"picker shards reassigned #{index + 1}", value, "s")
        run.add("picker shards reassigned median", median(reassigned), "s")
        run.add(
            "fire delay, job due at kill in a dead picker's shard (median)",
            median([r["probe_fire_delay_s"] for r in pickers]),
            "s",
        )
    return run


def _leader_metrics(run: ScenarioRun, leaders: list[dict[str, Any]]) -> None:
    failovers = [r["failover_s"] for r in leaders]
    for index, value in enumerate(failovers):
        run.add(f"leader failover #{index + 1}", value, "s")
    run.add("leader failover median", median(failovers), "s")
    run.add(
        "lease left at kill (median)", median([r["lease_left_at_kill_s"] for r in leaders]), "s"
    )
    run.add(
        "failover after lease expiry (median)",
        median([r["failover_s"] - r["lease_left_at_kill_s"] for r in leaders]),
        "s",
    )
    run.add(
        "failovers without epoch + 1",
        sum(1 for r in leaders if r["new_epoch"] != r["old_epoch"] + 1),
        "count",
        GOAL_ZERO,
    )


# --- orchestration ------------------------------------------------------------------------

ScenarioFn = Callable[[ClusterEnv, DistSettings], Awaitable[ScenarioRun]]
SINGLE: dict[str, ScenarioFn] = {
    "http": dist_http,
    "batch": dist_batch,
    "firelag": dist_firelag,
    "failover": dist_failover,
}


def _progress(run: ScenarioRun) -> None:
    first = run.metrics[0] if run.metrics else None
    summary = f"{first.name} = {first.value}" if first else run.error
    print(f"[bench]   {summary}", file=sys.stderr, flush=True)


async def warm_up(env: ClusterEnv, ds: DistSettings) -> dict[str, Any]:
    """Run ``warmup_jobs`` through the cluster, then ANALYZE the tables.

    A fresh database has no statistics, and autovacuum looks at it once a minute at
    most: until then the hot statements' plans (and asyncpg's cached prepared
    statements, whose generic plans were made while the tables were empty) scan whole
    tables, which makes the first minute several times slower than the steady state.
    ``--warmup-jobs 0`` measures that cold start instead.
    """
    if ds.warmup_jobs <= 0:
        return {"jobs": 0}
    started = time.perf_counter()
    baseline = await env.db.fetchval(COMPLETED)
    requests = _batch_requests(env, "bench-warmup", ds.warmup_jobs, ds.base.batch_size)
    conns = await _connections(env, ds.base.batch_clients)
    try:
        load = await drive(conns, requests, expect=201)
    finally:
        await close_connections(conns)
    if load.first_error:
        raise RuntimeError(f"warm-up failed: {load.first_error}")
    await _wait_completed(
        env,
        baseline + ds.warmup_jobs,
        deadline=time.perf_counter() + ds.base.timeout_s,
        interval_s=ds.base.poll_interval_s,
    )
    await env.db.execute("ANALYZE jobs, job_runs")
    return {"jobs": ds.warmup_jobs, "seconds": time.perf_counter() - started}


def _annotate(
    run: ScenarioRun, env: ClusterEnv, idle: dict[str, Any], warmup: dict[str, Any]
) -> None:
    run.raw["cluster_ready_s"] = env.ready_s
    run.raw["idle_cpu"] = idle
    run.raw["warmup"] = warmup
    run.add("idle cluster CPU (roles + PostgreSQL)", idle["cluster_cores"], "cores")


async def _run_cluster(
    pg: BenchPostgres, ds: DistSettings, scenario: str
) -> dict[str, list[ScenarioRun]]:
    """One fresh cluster; the scenario's run(s) on it."""
    key_runs: dict[str, list[ScenarioRun]] = {}
    async with bench_cluster(pg, ds.size, ds.extra, keep_data=ds.keep_data) as env:
        print(f"[bench]   cluster settled in {env.ready_s:.1f}s", file=sys.stderr, flush=True)
        warmup = await warm_up(env, ds) if scenario != "failover" else {"jobs": 0}
        idle = await idle_cpu(env, ds.idle_s)
        if scenario == "future":
            key_runs = await dist_future(env, ds)
            for runs in key_runs.values():
                for run in runs:
                    _annotate(run, env, idle, warmup)
        else:
            run = await SINGLE[scenario](env, ds)
            _annotate(run, env, idle, warmup)
            key_runs[scenario] = [run]
    return key_runs


async def _run_scenarios(
    pg: BenchPostgres, ds: DistSettings, args: argparse.Namespace
) -> dict[str, list[ScenarioRun]]:
    collected: dict[str, list[ScenarioRun]] = {}
    for scenario in args.scenario_list:
        repeats = 1 if scenario in {"future", "failover"} else args.repeat
        for index in range(repeats):
            print(f"[bench] {scenario} run {index + 1}/{repeats} ...", file=sys.stderr)
            started = time.perf_counter()
            try:
                got = await _run_cluster(pg, ds, scenario)
            except Exception as exc:
                traceback.print_exc()
                got = {scenario: [ScenarioRun(scenario, error=f"{type(exc).__name__}: {exc}")]}
            for key, runs in got.items():
                for run in runs:
                    run.raw.setdefault("scenario_wall_s", time.perf_counter() - started)
                    if scenario != "future":
                        _progress(run)
                collected.setdefault(key, []).extend(runs)
    return collected


async def run_all(args: argparse.Namespace, base: Settings, extra: list[str]) -> dict[str, Any]:
    """Start PostgreSQL, run the scenarios (a fresh cluster each), stop everything.

    SIGTERM (like Ctrl-C) cancels the run; the clusters and PostgreSQL are still stopped
    and their files deleted.
    """
    ds = settings_from(args, base, extra)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated: list[int] = []

    def on_sigterm() -> None:
        terminated.append(signal.SIGTERM)
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    pg = BenchPostgres(keep_data=args.keep_data)
    pg_info: dict[str, Any] = {}
    try:
        pg.start()
        if ds.pg_statements:
            await pg.enable_statements()
        pg_info = await pg.describe()
        print(
            f"[bench] PostgreSQL {pg_info['version'].split(',')[0]}: fsync={pg_info['fsync']}"
            f" synchronous_commit={pg_info['synchronous_commit']} (durable)",
            file=sys.stderr,
            flush=True,
        )
        collected = await _run_scenarios(pg, ds, args)
    except asyncio.CancelledError:
        if terminated:
            print("[bench] SIGTERM: stopped", file=sys.stderr)
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        pg.destroy()
    results = {
        key: {
            "rows": report.aggregate(runs),
            "errors": [r.error for r in runs if r.error],
            "runs": [report.run_to_dict(r) for r in runs],
        }
        for key, runs in collected.items()
    }
    return {
        "profile": "distributed",
        "server_args": extra,
        "cluster": ds.size.as_dict(),
        "future_sizes": list(ds.future_sizes),
        "postgres": pg_info,
        "results": results,
    }


def settings_from(args: argparse.Namespace, base: Settings, extra: list[str]) -> DistSettings:
    return DistSettings(
        base=base,
        size=ClusterSize(
            api=args.api, pickers=args.pickers, workers=args.workers, coordinators=args.coordinators
        ),
        extra=tuple(extra),
        future_sizes=tuple(args.future_sizes),
        future_jobs=args.future_jobs,
        failover_rounds=args.failover_rounds,
        pg_sample_s=args.pg_sample,
        pg_statements=args.pg_statements,
        warmup_jobs=args.warmup_jobs,
        repeat=args.repeat,
        keep_data=args.keep_data,
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    if not sizes or any(s < 0 for s in sizes):
        raise argparse.ArgumentTypeError("comma-separated counts >= 0")
    return tuple(sorted(sizes))


def notes(document: dict[str, Any]) -> str:
    """Lines printed above the table."""
    pg = document.get("postgres") or {}
    size = document.get("cluster") or {}
    return (
        f"distributed profile: {size.get('api')} api, {size.get('coordinators')} coordinators,"
        f" {size.get('pickers')} pickers, {size.get('workers')} workers, one process each;"
        f" {pg.get('version', 'PostgreSQL ?').split(',')[0]} with fsync={pg.get('fsync')},"
        f" synchronous_commit={pg.get('synchronous_commit')} (durable);"
        f" shared_buffers={pg.get('shared_buffers')}"
    )
