"""Scenarios that need a cluster (``--profile distributed``): ``future`` and ``failover``."""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench import api
from bench.cluster import LEASE_NAME, ClusterTarget
from bench.measure import GOAL_ZERO, host_header, throughput
from bench.model import ScenarioRun, Settings
from bench.pending import PENDING_USER, load_pending
from bench.stats import median
from bench.target import new_user
from tests.support.waiting import poll

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


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def _short(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


# --- many pending future jobs -------------------------------------------------------------


async def insert_future(target: ClusterTarget, have: int, want: int) -> dict[str, float]:
    """Top the store up from ``have`` to ``want`` pending jobs (COPY, ``bench.pending``);
    then VACUUM ANALYZE and CHECKPOINT so the measured run inherits neither dirty pages nor
    an autovacuum of the new rows. Seconds per step."""
    timings = {"insert_s": await load_pending(target.db, have, want, target.shard_count)}
    for key, statement in (
        ("vacuum_analyze_s", "VACUUM ANALYZE jobs"),
        ("checkpoint_s", "CHECKPOINT"),
    ):
        t0 = time.perf_counter()
        await target.db.execute(statement)
        timings[key] = time.perf_counter() - t0
    return timings


async def _future_run(
    target: ClusterTarget, s: Settings, key: str, pending: int, timings: dict[str, float]
) -> ScenarioRun:
    run = ScenarioRun(key, raw={"user_id": new_user(key), "future_jobs": pending, **timings})
    try:
        requests = api.batch_requests(
            host_header(target), run.raw["user_id"], s.future_jobs, s.batch_size
        )
        await throughput(
            target, s, run, jobs=s.future_jobs, clients=s.batch_clients, requests=requests,
            goal=None,
        )  # fmt: skip
        run.add("future jobs pending in the store", pending, "jobs")
        if timings:
            run.add("setup: insert future jobs (not timed)", timings["insert_s"], "s")
            setup = timings["vacuum_analyze_s"] + timings["checkpoint_s"]
            run.add("setup: vacuum + checkpoint", setup, "s")
    except Exception as exc:
        traceback.print_exc()
        run.error = f"{type(exc).__name__}: {exc}"
    return run


async def future(target: ClusterTarget, s: Settings) -> list[ScenarioRun]:
    """A fixed batch of immediate jobs, e2e, with 0, 10k, 100k, 1M... future jobs pending;
    ``--repeat`` runs at each size, on the one cluster."""
    runs: list[ScenarioRun] = []
    have = 0
    for size in s.future_sizes:
        key = f"future-{_short(size)}"
        _say(f"{key}: setting up {size:,} future jobs ...")
        timings = await insert_future(target, have, size) if size > have else {}
        have = max(have, size)
        pending = await target.db.fetchval(
            "SELECT count(*) FROM jobs WHERE user_id = $1 AND status = 'PENDING'", PENDING_USER
        )
        for index in range(s.repeat):
            _say(f"{key} run {index + 1}/{s.repeat} ...")
            runs.append(await _future_run(target, s, key, pending, timings))
            first = runs[-1].metrics[0] if runs[-1].metrics else None
            _say(f"  {first.name} = {first.value}" if first else f"  {runs[-1].error}")
    return runs


# --- failover -----------------------------------------------------------------------------


async def _until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float
) -> float:
    """perf_counter when ``check()`` first holds; TimeoutError after ``timeout_s``."""
    if not await poll(check, timeout_s, interval_s):
        raise TimeoutError("condition not met in time")
    return time.perf_counter()


async def _wait_member_up(
    target: ClusterTarget, node: str, pid: int | None, timeout_s: float
) -> None:
    """Until ``node`` heartbeats from process ``pid`` (a respawned member is up)."""

    async def up() -> bool:
        row = await target.db.fetchrow(MEMBER_ROW, node)
        return row is not None and row[0] == pid and row[1] < target.member_ttl

    if not await poll(up, timeout_s):
        raise TimeoutError(f"{node} (pid {pid}) did not heartbeat within {timeout_s:.0f}s")


async def _leader_round(target: ClusterTarget, timeout_s: float) -> dict[str, Any]:
    holder, epoch, live, left = await target.db.fetchrow(LEASE_ROW, LEASE_NAME)
    member = target.member_by_node(holder) if live else None
    if member is None:
        raise RuntimeError(f"no live leader to kill (lease: {holder!r}, live={live})")
    killed_at = target.kill(member)
    state: dict[str, Any] = {}

    async def taken_over() -> bool:
        row = await target.db.fetchrow(LEASE_ROW, LEASE_NAME)
        state.update(holder=row[0], epoch=row[1])
        return row[0] is not None and row[0] != holder and bool(row[2])

    took_at = await _until(taken_over, timeout_s, 0.005)
    target.respawn(member)  # back as a standby for the next round
    await _wait_member_up(target, holder, member.pid, timeout_s)
    return {
        "killed": holder,
        "old_epoch": epoch,
        "lease_left_at_kill_s": left,
        "new_leader": state["holder"],
        "new_epoch": state["epoch"],
        "failover_s": took_at - killed_at,
    }


async def _picker_round(target: ClusterTarget, timeout_s: float) -> dict[str, Any]:
    db = target.db
    owners = await db.fetch(OWNERS)
    victim = owners[0][0]
    member = target.member_by_node(victim)
    if member is None:
        raise RuntimeError(f"shard owner {victim!r} is not a cluster member")
    shard = await db.fetchval(
        "SELECT min(shard_id) FROM shard_assignments WHERE owner = $1", victim
    )
    _, heartbeat_age = await db.fetchrow(MEMBER_ROW, victim)
    killed_at = target.kill(member)
    kill_epoch = time.time()
    # A job due at the kill instant in one of the dead picker's shards: when does it start?
    probe = str(uuid.uuid4())
    await db.execute(INSERT_PROBE, probe, "bench-failover", kill_epoch, shard)

    async def reassigned() -> bool:
        mine, total = await db.fetchrow(SHARDS_OF, victim)
        return bool(mine == 0 and total == target.shard_count)

    done_at = await _until(reassigned, timeout_s, 0.01)
    started: list[float] = []

    async def probe_started() -> bool:
        value = await db.fetchval(PROBE_STARTED, probe)
        if value is not None:
            started.append(value)
        return value is not None

    await _until(probe_started, timeout_s, 0.01)
    target.respawn(member)
    await _wait_member_up(target, victim, member.pid, timeout_s)
    await target.wait_settled(timeout_s)  # shards spread over every picker again
    return {
        "killed": victim,
        "shards_owned": owners[0][1],
        "heartbeat_age_at_kill_s": heartbeat_age,
        "reassigned_s": done_at - killed_at,
        "probe_fire_delay_s": started[0] - kill_epoch,
    }


async def failover(target: ClusterTarget, s: Settings) -> ScenarioRun:
    """SIGKILL the leader coordinator (rounds times), then a picker (rounds times).

    Each needs a survivor to take over: with one coordinator (or picker) that part is
    skipped (noted in the JSON).
    """
    run = ScenarioRun("failover")
    timeout_s = min(s.timeout_s, 120.0)
    size = s.cluster
    leaders: list[dict[str, Any]] = []
    pickers: list[dict[str, Any]] = []
    if size.coordinators < 2 or size.pickers < 2:
        run.raw["skipped"] = "a role with one process has no survivor to fail over to"
    for index in range(s.failover_rounds if size.coordinators >= 2 else 0):
        await target.wait_settled(timeout_s)
        await asyncio.sleep(1.0)  # a full campaign tick: every standby is campaigning
        leaders.append(await _leader_round(target, timeout_s))
        _say(f"  leader kill {index + 1}: {leaders[-1]}")
    for index in range(s.failover_rounds if size.pickers >= 2 else 0):
        await target.wait_settled(timeout_s)
        pickers.append(await _picker_round(target, timeout_s))
        _say(f"  picker kill {index + 1}: {pickers[-1]}")
    run.raw.update(leader_rounds=leaders, picker_rounds=pickers, events=target.events)
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
    left = [r["lease_left_at_kill_s"] for r in leaders]
    run.add("lease left at kill (median)", median(left), "s")
    after = [r["failover_s"] - r["lease_left_at_kill_s"] for r in leaders]
    run.add("failover after lease expiry (median)", median(after), "s")
    jumps = sum(1 for r in leaders if r["new_epoch"] != r["old_epoch"] + 1)
    run.add("failovers without epoch + 1", jumps, "count", GOAL_ZERO)
