"""Schedule policies end to end on in-process roles (MemoryStore + FakeClock): overlap
across two workers, misfires after an outage, start deadlines, pause and resume, and the
fire ledger and its counters that say what happened to every nominal fire."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from chronoq.domain.jobs import Fire, Run
from chronoq.domain.policies import Misfire, Overlap, Policies, SkipReason
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.observability.metrics import Metrics
from chronoq.ports.jobs import ListFiresParams
from chronoq.services.gauges import ClusterSampler

try:
    from chronoq.testing.roles import USER, Stack
except ImportError as exc:  # pragma: no cover - only while the memory adapters are written
    pytest.skip(f"chronoq.testing.roles is not importable yet: {exc}", allow_module_level=True)

S = timedelta(seconds=1)


async def ledger(stack: Stack, job_id: str) -> list[Fire]:
    now = stack.clock.now()
    fires = await stack.store.list_fires(
        ListFiresParams(
            user_id=USER, job_id=job_id, start=now - timedelta(days=2), end=now, limit=1000
        )
    )
    assert fires is not None
    return fires


async def runs(stack: Stack, job_id: str) -> list[Run]:
    return sorted(await stack.store.list_runs(USER, job_id, 1000), key=lambda r: r.scheduled_for)


def nominal(first: datetime, every: timedelta, until: datetime) -> list[datetime]:
    out = []
    at = first
    while at <= until:
        out.append(at)
        at += every
    return out


def covered(fires: list[Fire], every: timedelta) -> list[datetime]:
    """The nominal fires the ledger accounts for, spans expanded (interval schedules)."""
    out: list[datetime] = []
    for fire in fires:
        if fire.manual:
            continue
        out += nominal(fire.scheduled_for, every, fire.last_scheduled_for)
    return out


async def recurring(stack: Stack, payload: str, every: int, **policies: object) -> str:
    job = stack.job(
        payload,
        due_in=every,
        cron=f"@every {every}s",
        policies=Policies(**policies),  # type: ignore[arg-type]
    )
    await stack.store.insert_jobs([job])
    return job.job_id


async def two_workers_and_a_picker(stack: Stack) -> None:
    await stack.coordinator("c1")
    await stack.picker("p1")
    await stack.worker("w1")
    await stack.worker("w2")


async def test_overlap_skip_never_runs_two_at_once_across_workers(stack: Stack) -> None:
    await two_workers_and_a_picker(stack)
    job_id = await recurring(stack, "sleep:2500ms", 1, overlap=Overlap.SKIP)
    await stack.clock.advance(20.0)
    done = [r for r in await runs(stack, job_id) if r.status is RunStatus.COMPLETED]
    assert len(done) >= 4
    for before, after in itertools.pairwise(done):
        assert before.completed_at is not None and after.started_at is not None
        assert after.started_at >= before.completed_at, "two runs of the job overlapped"
    fires = await ledger(stack, job_id)
    reasons = {f.reason for f in fires if f.outcome == RunStatus.SKIPPED}
    assert reasons == {SkipReason.OVERLAP}
    times = covered(fires, S)
    assert len(times) == len(set(times)), "a fire has two outcomes"
    assert times == nominal(times[0], S, times[-1]), "a fire has no outcome"


async def test_overlap_allow_lets_runs_overlap(stack: Stack) -> None:
    await two_workers_and_a_picker(stack)
    job_id = await recurring(stack, "sleep:2500ms", 1, overlap=Overlap.ALLOW)
    await stack.clock.advance(6.0)
    started = [r for r in await runs(stack, job_id) if r.started_at is not None]
    assert len(started) >= 4
    assert all(f.outcome != RunStatus.SKIPPED for f in await ledger(stack, job_id))


async def test_buffer_one_starts_the_next_fire_when_the_running_one_ends(stack: Stack) -> None:
    await two_workers_and_a_picker(stack)
    job_id = await recurring(stack, "sleep:2500ms", 2, overlap=Overlap.BUFFER_ONE)
    await stack.clock.advance(12.0)
    done = [r for r in await runs(stack, job_id) if r.completed_at is not None and r.started_at]
    done = [r for r in done if r.status is RunStatus.COMPLETED]
    assert len(done) >= 3
    for before, after in itertools.pairwise(done):
        assert before.completed_at is not None and after.started_at is not None
        gap = after.started_at - before.completed_at
        assert timedelta(0) <= gap < S, "the buffered fire waited past the end of the previous"


async def test_cancel_previous_stops_the_running_run_and_the_job_goes_on(stack: Stack) -> None:
    await two_workers_and_a_picker(stack)
    job_id = await recurring(stack, "sleep:1h", 5, overlap=Overlap.CANCEL_PREVIOUS)
    await stack.clock.advance(5.0)  # first fire runs (for an hour, were it not replaced)
    await stack.clock.advance(5.0)  # the second fire asks it to stop
    await stack.clock.advance(stack.lease_seconds)  # a lease renewal carries the cancel
    statuses = [r.status for r in await runs(stack, job_id)]
    assert statuses[0] is RunStatus.CANCELLED
    assert RunStatus.RUNNING in statuses[1:]
    job = await stack.store.get_job(USER, job_id)
    assert job is not None and job.status not in (JobStatus.CANCELLED, JobStatus.COMPLETED)


async def test_run_once_after_an_outage_runs_one_and_records_the_rest(stack: Stack) -> None:
    job_id = await recurring(stack, "hello", 60, misfire=Misfire.RUN_ONCE)
    await stack.clock.advance(3600.0 + 30)  # no picker for an hour
    await stack.coordinator("c1")
    await stack.picker("p1")
    await stack.worker("w1")
    await stack.clock.advance(5.0)
    fires = await ledger(stack, job_id)
    ran = [f for f in fires if f.run_id is not None and f.outcome != RunStatus.SKIPPED]
    spans = [f for f in fires if f.outcome == RunStatus.SKIPPED]
    assert len(ran) == 1 and ran[0].outcome == RunStatus.COMPLETED
    assert [(s.reason, s.count) for s in spans] == [(SkipReason.MISFIRE, 59)]


async def test_misfire_skip_drops_the_whole_backlog(stack: Stack) -> None:
    job_id = await recurring(stack, "hello", 60, misfire=Misfire.SKIP)
    await stack.clock.advance(600.0 + 30)
    await stack.coordinator("c1")
    await stack.picker("p1")
    await stack.worker("w1")
    await stack.clock.advance(5.0)
    fires = await ledger(stack, job_id)
    assert [f.reason for f in fires] == [SkipReason.MISFIRE]
    assert fires[0].count == 10
    assert await runs(stack, job_id) == []


async def test_a_fire_no_worker_could_start_in_time_is_skipped_missed_deadline(
    stack: Stack,
) -> None:
    await stack.coordinator("c1")
    await stack.picker("p1")
    job_id = await recurring(stack, "hello", 10, start_deadline_seconds=3)
    await stack.clock.advance(10.0 + 8)  # the fire is queued, no worker until 8 s later
    await stack.worker("w1")
    await stack.clock.advance(1.0)
    first = (await ledger(stack, job_id))[0]
    assert (first.outcome, first.reason) == (RunStatus.SKIPPED, SkipReason.MISSED_DEADLINE)
    await stack.clock.advance(10.0)  # the next fire finds a worker: it runs
    assert any(f.outcome == RunStatus.COMPLETED for f in await ledger(stack, job_id))


async def test_pause_and_resume_skip_the_paused_fires_and_trigger_runs_one_now(
    stack: Stack,
) -> None:
    await two_workers_and_a_picker(stack)
    job_id = await recurring(stack, "hello", 10)
    await stack.clock.advance(25.0)  # fires at 10 s and 20 s ran
    paused = await stack.store.pause_job(USER, job_id, stack.clock.now())
    assert paused is not None and paused.status is JobStatus.PAUSED
    await stack.clock.advance(60.0)  # 30 .. 80 s pass while paused
    trigger = await stack.store.trigger_job(USER, job_id, stack.clock.now())
    assert trigger is not None and trigger.manual
    await stack.clock.advance(1.0)
    resumed = await stack.store.resume_job(USER, job_id, stack.clock.now(), catch_up=False)
    assert resumed is not None and resumed.status is JobStatus.PENDING
    await stack.clock.advance(15.0)
    fires = await ledger(stack, job_id)
    paused_spans = [f for f in fires if f.reason is SkipReason.PAUSED]
    assert [(f.count) for f in paused_spans] == [6]
    assert [f.outcome for f in fires if f.manual] == [RunStatus.COMPLETED]
    times = covered(fires, 10 * S)
    assert times == nominal(times[0], 10 * S, times[-1])


async def test_the_leader_exports_skipped_fires_per_reason(stack: Stack) -> None:
    coordinator = await stack.coordinator("c1")
    metrics = Metrics()
    sampler = ClusterSampler(coordinator, stack.store, stack.coordination, stack.clock,
                             metrics, member_ttl=stack.member_ttl, every=1.0)  # fmt: skip
    await sampler.start()
    try:
        await recurring(stack, "hello", 60, misfire=Misfire.SKIP)
        await stack.clock.advance(300.0 + 30)
        await stack.picker("p1")
        await stack.clock.advance(3.0)

        def skipped(reason: str) -> float | None:
            return metrics.registry.get_sample_value("fires_skipped_total", {"reason": reason})

        assert skipped("misfire") == 5.0
        assert skipped("overlap") == 0.0
    finally:
        await sampler.stop()
