"""Measurements shared by the scenarios: end-to-end throughput and its timeline.

Written once against ``bench.target.Target``; each target adds its own resource
figures (CPU per part, I/O, engine counters) through ``resource_metrics``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bench.cpu import CpuSample, cpu_between
from bench.httpclient import Connection
from bench.load import LoadResult, close_connections, drive, open_connections
from bench.model import Goal, ScenarioRun, Settings
from bench.stats import summary_ms
from bench.target import Target

GOAL_ZERO = Goal("<=", 0)


async def connect(target: Target, count: int) -> list[Connection]:
    """``count`` keep-alive connections spread round-robin over the target's api processes."""
    return await open_connections(target.host, target.api_ports, count)


def host_header(target: Target) -> str:
    return f"{target.host}:{target.api_ports[0]}"


async def throughput(
    target: Target,
    s: Settings,
    run: ScenarioRun,
    *,
    jobs: int,
    clients: int,
    requests: Sequence[bytes],
    goal: Goal | None,
) -> None:
    """Send ``requests`` (``jobs`` jobs in all) over ``clients`` connections; the clock runs
    from the first request until every job ran and its outcome is stored."""
    load = LoadResult(started=0.0, finished=0.0)
    timeline: list[dict[str, Any]] = []
    sampler: asyncio.Task[None] | None = None
    conns = await connect(target, clients)
    try:
        baseline = await target.completed()
        counters_before = await target.counters()
        before = target.cpu()
        if s.timeline_interval_s > 0:
            period = max(s.timeline_interval_s, target.timeline_min_interval_s)
            sampler = asyncio.create_task(
                _timeline(target, period, load, before, baseline, timeline)
            )
        async with target.measuring(run, jobs):
            async with asyncio.timeout(s.timeout_s):
                await drive(conns, requests, expect=201, result=load)
            at_submit_end = target.cpu()
            completed_at_submit_end = await target.completed() - baseline
            completion = await target.wait_completed(
                baseline + jobs, run.raw["user_id"],
                deadline=load.started + s.timeout_s, interval_s=s.poll_interval_s,
            )  # fmt: skip
            after = target.cpu()
            counters_after = await target.counters()
    finally:
        if sampler is not None:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        await close_connections(conns)
    e2e_s = completion.done_at - load.started
    cpu = cpu_between(before, after)
    run.raw.update(
        jobs=jobs,
        clients=clients,
        requests=len(requests),
        submit_s=load.elapsed_s,
        e2e_s=e2e_s,
        executed_s=(completion.executed_at or completion.done_at) - load.started,
        drain_after_submit_s=completion.done_at - load.finished,
        completed_at_submit_end=completed_at_submit_end,
        completion_polls=completion.polls,
        statuses={str(k): v for k, v in load.statuses.items()},
        first_error=load.first_error,
        request_latency_ms=summary_ms(load.latencies_s),
        cpu_e2e=cpu,
        cpu_submit_phase=cpu_between(before, at_submit_end),
        timeline=timeline,
    )
    _throughput_metrics(run, load, jobs=jobs, e2e_s=e2e_s, goal=goal)
    target.resource_metrics(run, jobs, cpu, (counters_before, counters_after))
    if s.verify:
        run.raw["verified_completed_jobs"] = done = await target.completed_jobs(run.raw["user_id"])
        where = "listed" if target.kind == "embedded" else "store"
        run.add(f"jobs COMPLETED ({where}) - N", done - jobs, "jobs", Goal(">=", 0))


async def _timeline(
    target: Target,
    period: float,
    load: LoadResult,
    start: CpuSample,
    baseline: float,
    out: list[dict[str, Any]],
) -> None:
    """Every ``period``: responses so far, the target's progress, CPU per part (cancelled)."""
    while True:
        await asyncio.sleep(period)
        point = await target.timeline_point(baseline)
        sample = target.cpu()
        out.append(
            {
                "t": round(sample.at - start.at, 3),
                "submitted": load.responses,
                **point,
                "cpu_s": {
                    k: round(v - start.parts.get(k, 0.0), 3) for k, v in sample.parts.items()
                },
            }
        )


def _throughput_metrics(
    run: ScenarioRun, load: LoadResult, *, jobs: int, e2e_s: float, goal: Goal | None
) -> None:
    latency = run.raw["request_latency_ms"]
    drain_s = run.raw["drain_after_submit_s"]
    done_early = run.raw["completed_at_submit_end"]
    run.add("end-to-end throughput", jobs / e2e_s, "jobs/s", goal)
    run.add("submit-only rate", jobs / load.elapsed_s, "jobs/s")
    run.add("request latency p50", latency["p50"], "ms")
    run.add("request latency p99", latency["p99"], "ms")
    run.add("drain after last submit", drain_s, "s")
    run.add("non-201 responses", load.unexpected(201), "count", GOAL_ZERO)
    run.add("execution rate while submitting", done_early / load.elapsed_s, "runs/s")
    run.add(
        "execution rate after last submit",
        (jobs - done_early) / drain_s if drain_s > 0 else None,
        "runs/s",
    )


async def wait_all_done(
    target: Target, s: Settings, baseline: float, count: int, user: str
) -> float:
    """Until ``count`` more runs completed and nothing of ``user`` is left; perf_counter then."""
    completion = await target.wait_completed(
        baseline + count, user,
        deadline=time.perf_counter() + s.timeout_s, interval_s=s.poll_interval_s,
    )  # fmt: skip
    return completion.done_at
