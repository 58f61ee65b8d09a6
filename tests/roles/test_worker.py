"""The worker role in-process: MemoryStore + FakeClock, a fake executor, no real processes.

Every wait is the fake clock's, so each test is deterministic and sleeps nowhere:
starts at ``available_at`` exactly, ``mark_started`` before execution (and batched),
cancel found at lease renewal with every hint dropped, lost leases abandoned,
graceful stop handing back, and retries that discount interruptions. The completer's
handling of refused and unavailable stores is in ``test_worker_completer.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chronoq.adapters.fs import FsBlobStore
from chronoq.adapters.memory import MemoryNotifier
from chronoq.domain.clock import Clock
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Job, Run
from chronoq.domain.retry import RetryPolicy
from chronoq.domain.states import LOST_AT_SHUTDOWN, JobStatus, RunStatus
from chronoq.executors import EchoExecutor, ExecutionRequest, ExecutionResult, ExecutorRegistry
from chronoq.executors.base import NOT_STARTED
from chronoq.observability.metrics import Metrics
from chronoq.ports.dispatch import ClaimDueParams, ReapParams
from chronoq.ports.notify import CANCEL, RUNS
from chronoq.services.worker import Worker, WorkerConfig
from chronoq.testing import FakeClock

try:
    from chronoq.testing import MemoryStore
except ImportError:  # pragma: no cover - only while the memory adapter is being written
    pytest.skip("chronoq.testing.MemoryStore is not importable yet", allow_module_level=True)

USER = "alice"
LEASE = 30.0
HEARTBEAT = LEASE / 3
LOOKAHEAD = 0.5
GRACE = 5.0


# -- a controllable executor -------------------------------------------------------------------


@dataclass
class Call:
    request: ExecutionRequest
    at: datetime
    result: asyncio.Future[ExecutionResult]
    cancelled: bool = False


class FakeExecutor:
    """``fake:<anything>``: runs until the test finishes it (``finish``) or it is cancelled."""

    prefix = "fake:"

    def __init__(self, clock: Clock, log: list[tuple[str, str]]) -> None:
        self.clock = clock
        self.log = log
        self.calls: dict[str, Call] = {}

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        future: asyncio.Future[ExecutionResult] = asyncio.get_running_loop().create_future()
        call = Call(request, self.clock.now(), future)
        self.calls[request.run_id] = call
        self.log.append(("execute", request.run_id))
        try:
            return await future
        except asyncio.CancelledError:
            call.cancelled = True
            raise

    def finish(self, run_id: str, *, ok: bool = True, output: str = "done") -> None:
        error = None if ok else "exit status 1"
        self.calls[run_id].result.set_result(
            ExecutionResult(succeeded=ok, output=output, exit_code=0 if ok else 1, error=error)
        )


class SlotExecutor(FakeExecutor):
    """Like the shell executor: waits for a slot, THEN begins (``begins_itself``)."""

    prefix = "slot:"
    begins_itself = True

    def __init__(self, clock: Clock, log: list[tuple[str, str]]) -> None:
        super().__init__(clock, log)
        self.slot = asyncio.Event()

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        await self.slot.wait()
        if not await request.begin():
            self.log.append(("refused", request.run_id))
            return NOT_STARTED
        return await super().execute(request)


class SpyStore:
    """The MemoryStore, with every Dispatch call logged and optional hooks before a call."""

    def __init__(self, store: Any, log: list[tuple[str, str]]) -> None:
        self.inner = store
        self.log = log
        self.marks: list[list[str]] = []
        self.before: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            hook = self.before.get(name)
            if hook is not None:
                await hook(*args, **kwargs)
            if name == "mark_started":
                self.marks.append(list(args[1]))
                self.log.append(("mark_started", ",".join(args[1])))
            return await target(*args, **kwargs)

        return call


class DroppingNotifier(MemoryNotifier):
    """Loses every CANCEL hint (a worker on another host that never hears them)."""

    def publish(self, channel: str, message: str = "") -> None:
        if channel != CANCEL:
            super().publish(channel, message)


# -- the rig -----------------------------------------------------------------------------------


@dataclass
class Rig:
    clock: FakeClock
    store: Any
    spy: SpyStore
    notifier: MemoryNotifier
    fake: FakeExecutor
    slots: SlotExecutor
    tmp: Path
    log: list[tuple[str, str]] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    def worker(self, worker_id: str = "w1", **config: Any) -> Worker:
        registry = ExecutorRegistry(EchoExecutor())
        registry.register(self.fake)
        registry.register(self.slots)
        settings = dict(lease_seconds=LEASE, lookahead=LOOKAHEAD, shutdown_grace=GRACE)
        settings.update(config)
        worker = Worker(
            self.spy, FsBlobStore(self.tmp / "blobs"), self.notifier, self.clock, Metrics(),
            registry, WorkerConfig(worker_id=worker_id, **settings),
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    async def submit(self, payload: str, *, due_in: float = 0.0, max_retries: int = 0) -> str:
        """A one-shot job whose run is QUEUED, available ``due_in`` seconds from now."""
        now = self.clock.now()
        due = now + timedelta(seconds=due_in)
        job = self.job(payload, due, max_retries)
        await self.store.insert_jobs([job])
        claimed = await self.store.claim_due(ClaimDueParams(shards=None, now=now, horizon=due))
        assert [r.job_id for r in claimed] == [job.job_id]
        return job.job_id

    async def submit_many(self, payload: str, count: int, *, due_in: float) -> list[str]:
        """``count`` one-shot jobs due together, their runs QUEUED by one claim."""
        now = self.clock.now()
        due = now + timedelta(seconds=due_in)
        jobs = [self.job(f"{payload} {i}", due) for i in range(count)]
        await self.store.insert_jobs(jobs)
        params = ClaimDueParams(shards=None, now=now, horizon=due, limit=count)
        assert len(await self.store.claim_due(params)) == count
        return [job.job_id for job in jobs]

    def job(self, payload: str, due: datetime, max_retries: int = 0) -> Job:
        now = self.clock.now()
        return Job(
            job_id=new_id(), user_id=USER, project_id="p", payload=payload, payload_ref=None,
            payload_size=len(payload), cron_schedule=None, timezone=None, next_fire_at=due,
            shard_id=0, status=JobStatus.PENDING, max_retries=max_retries, timeout_seconds=None,
            created_at=now, updated_at=now,
        )  # fmt: skip

    async def runs(self, job_id: str) -> list[Run]:
        """The job's runs, oldest attempt first."""
        return sorted(await self.store.list_runs(USER, job_id), key=lambda r: r.attempt)

    async def run(self, job_id: str) -> Run:
        (run,) = await self.runs(job_id)
        return run

    async def stop(self, worker: Worker) -> None:
        """Stop gracefully while fake time passes (the grace is fake seconds)."""
        task = asyncio.create_task(worker.stop())
        await self.clock.run_until(task.done, within=GRACE + 5, step=0.5)
        await task


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FakeClock()
    store = MemoryStore()
    await store.start()
    log: list[tuple[str, str]] = []
    rig = Rig(
        clock=clock, store=store, spy=SpyStore(store, log), notifier=DroppingNotifier(),
        fake=FakeExecutor(clock, log), slots=SlotExecutor(clock, log), tmp=tmp_path, log=log,
    )  # fmt: skip
    yield rig
    for worker in rig.workers:
        for call in rig.fake.calls.values():
            if not call.result.done():
                call.result.set_result(ExecutionResult(succeeded=True))
        rig.slots.slot.set()
        await rig.stop(worker)
    await store.close()


# -- starting ----------------------------------------------------------------------------------


async def test_a_claimed_run_starts_exactly_at_available_at(rig: Rig) -> None:
    job_id = await rig.submit("fake:on time", due_in=7.25)
    due = (await rig.run(job_id)).available_at
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(7.0)
    assert worker.held == 1, "claimed ahead within the look-ahead"
    assert rig.fake.calls == {}, "nothing starts early"
    assert (await rig.run(job_id)).started_at is None
    await rig.clock.advance(0.25)
    (call,) = rig.fake.calls.values()
    assert call.at == due
    assert (await rig.run(job_id)).started_at == due


async def test_mark_started_precedes_execution(rig: Rig) -> None:
    job_id = await rig.submit("fake:one")
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(0.01)
    (call,) = rig.fake.calls.values()
    assert rig.log.index(("mark_started", call.request.run_id)) < rig.log.index(
        ("execute", call.request.run_id)
    )
    run = await rig.run(job_id)
    assert run.status is RunStatus.RUNNING and run.started_at == call.at  # while executing
    rig.fake.finish(call.request.run_id)
    await rig.clock.advance(0.01)
    run = await rig.run(job_id)
    assert (run.status, run.started_at) == (RunStatus.COMPLETED, call.at)


async def test_runs_due_at_one_instant_are_marked_started_in_one_call(rig: Rig) -> None:
    """The fire-lag benchmark's burst: 2,000 runs due together, one mark_started."""
    count = 2000
    jobs = await rig.submit_many("fake:burst", count, due_in=2.0)
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(2.0)
    assert len(rig.fake.calls) == count
    assert [len(ids) for ids in rig.spy.marks] == [count]
    marked = rig.log.index(("mark_started", ",".join(rig.spy.marks[0])))
    assert all(i > marked for i, (what, _) in enumerate(rig.log) if what == "execute")
    assert {call.at for call in rig.fake.calls.values()} == {rig.clock.now()}
    for run_id in list(rig.fake.calls):
        rig.fake.finish(run_id)
    await rig.clock.advance(0.01)
    statuses = {(await rig.run(j)).status for j in jobs[:: count // 20]}
    assert statuses == {RunStatus.COMPLETED}


async def test_inline_no_ops_are_never_marked_started(rig: Rig) -> None:
    jobs = {await rig.submit(f"plain echo {i}"): i for i in range(20)}
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(0.01)
    assert rig.spy.marks == []
    for job_id, i in jobs.items():
        run = await rig.run(job_id)
        assert (run.status, run.output) == (RunStatus.COMPLETED, f"Success: plain echo {i}")


async def test_a_run_reaped_before_its_start_never_executes(rig: Rig) -> None:
    job_id = await rig.submit("fake:reaped first")

    async def reaper_wins(*_args: Any) -> None:  # the reaper runs between claim and start
        now = rig.clock.now()
        await rig.store.reap_lost(ReapParams(now=now, retry_at=now, expire_all=True))

    rig.spy.before["mark_started"] = reaper_wins
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(0.01)
    assert len(rig.spy.marks) == 1
    assert rig.fake.calls == {}, "refused by mark_started: it must not execute"
    assert worker.held == 0
    run = await rig.run(job_id)
    assert (run.status, run.attempt, run.started_at, run.interruptions) == (
        RunStatus.QUEUED, 1, None, 0,
    )  # fmt: skip
    del rig.spy.before["mark_started"]
    await rig.clock.advance(5.0)  # claimed again (idle re-check) and run, as attempt 1
    (call,) = rig.fake.calls.values()
    rig.fake.finish(call.request.run_id)
    await rig.clock.advance(0.01)
    run = await rig.run(job_id)
    assert (run.status, run.attempt, run.interruptions) == (RunStatus.COMPLETED, 1, 0)


async def test_an_executor_that_begins_itself_is_marked_when_it_begins(rig: Rig) -> None:
    job_id = await rig.submit("slot:waits for a slot")
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(3.0)
    assert rig.spy.marks == [], "waiting for a slot is not started"
    assert (await rig.run(job_id)).started_at is None
    opened = rig.clock.now()
    rig.slots.slot.set()
    await rig.clock.advance(0.01)
    assert len(rig.spy.marks) == 1 and list(rig.slots.calls) == rig.spy.marks[0]
    assert (await rig.run(job_id)).started_at == opened


async def test_a_refused_begin_discards_the_result(rig: Rig) -> None:
    job_id = await rig.submit("slot:refused")
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(0.01)
    now = rig.clock.now()
    await rig.store.reap_lost(ReapParams(now=now, retry_at=now, expire_all=True))
    rig.slots.slot.set()
    await rig.clock.advance(0.01)
    assert ("refused", (await rig.run(job_id)).run_id) in rig.log
    assert rig.slots.calls == {}
    run = await rig.run(job_id)
    assert run.status in (RunStatus.QUEUED, RunStatus.RUNNING) and run.attempt == 1
    assert run.completed_at is None, "NOT_STARTED is never recorded as an outcome"


# -- cancel and leases -------------------------------------------------------------------------


async def test_a_cancel_with_every_hint_dropped_kills_within_one_heartbeat(rig: Rig) -> None:
    job_id = await rig.submit("fake:long")
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(HEARTBEAT / 2)  # mid-way between two heartbeats
    (call,) = rig.fake.calls.values()
    result = await rig.store.cancel_job(USER, job_id, rig.clock.now())
    assert result is not None and result.running_run_ids == [call.request.run_id]
    rig.notifier.publish(CANCEL, call.request.run_id)  # the API's hint: dropped
    latency = await rig.clock.run_until(lambda: call.cancelled, within=HEARTBEAT, step=0.05)
    assert latency <= HEARTBEAT
    await rig.clock.advance(0.01)
    run = await rig.run(job_id)
    assert (run.status, run.error_message) == (RunStatus.CANCELLED, "cancelled by the user")
    assert worker.held == 0


async def test_a_cancel_hint_kills_at_once(rig: Rig) -> None:
    rig.notifier = MemoryNotifier()  # hints delivered
    job_id = await rig.submit("fake:long")
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(0.01)
    (call,) = rig.fake.calls.values()
    await rig.store.cancel_job(USER, job_id, rig.clock.now())
    rig.notifier.publish(CANCEL, call.request.run_id)
    await rig.clock.advance(0)
    assert call.cancelled
    await rig.clock.advance(0.01)
    assert (await rig.run(job_id)).status is RunStatus.CANCELLED


async def test_a_lost_lease_is_abandoned_at_the_next_heartbeat(rig: Rig) -> None:
    job_id = await rig.submit("fake:lost")
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(0.01)
    (call,) = rig.fake.calls.values()
    now = rig.clock.now()
    later = now + timedelta(hours=1)  # attempt 2 waits: this worker must not re-claim it
    await rig.store.reap_lost(ReapParams(now=now, retry_at=later, expire_all=True))
    await rig.clock.advance(HEARTBEAT)
    assert call.cancelled and worker.held == 0
    first, second = await rig.runs(job_id)
    assert first.status is RunStatus.INTERRUPTED, "started, then lost: the store's rule"
    assert (second.status, second.attempt, second.interruptions) == (RunStatus.QUEUED, 2, 1)


async def test_retries_do_not_count_interruptions(rig: Rig) -> None:
    job_id = await rig.submit("fake:flaky", max_retries=1)
    first = rig.worker("w1")
    await first.start()
    await rig.clock.advance(0.01)
    await rig.stop(first)  # killed at the grace: INTERRUPTED, attempt 2 queued at once
    rig.workers.remove(first)
    second = rig.worker("w2", retry=RetryPolicy(base_seconds=0.0, cap_seconds=0.0))
    await second.start()
    await rig.clock.advance(0.01)
    call = rig.fake.calls[(await rig.runs(job_id))[1].run_id]
    rig.fake.finish(call.request.run_id, ok=False)  # the job's first own failure
    await rig.clock.advance(0.01)
    statuses = [(r.attempt, r.status, r.interruptions) for r in await rig.runs(job_id)]
    assert statuses[:2] == [(1, RunStatus.INTERRUPTED, 0), (2, RunStatus.RETRY_SCHEDULED, 1)]
    assert statuses[2][0] == 3, "max_retries=1 still allows one retry after an interruption"


async def test_a_retry_wakes_the_workers_but_a_plain_end_wakes_none(rig: Rig) -> None:
    """After an outcome the workers are hinted only if a run may have become claimable:
    a plain end wakes nobody (with the roles in separate processes each hint was a NOTIFY
    and an empty claim in every worker); a retry wakes them, so it starts when it is due,
    not at the next idle recheck (5 s)."""
    hints: list[str] = []
    rig.notifier.subscribe(RUNS, hints.append)
    plain = await rig.submit("fake:plain")
    flaky = await rig.submit("fake:flaky", max_retries=1)
    worker = rig.worker(retry=RetryPolicy(base_seconds=1.0, cap_seconds=1.0))
    await worker.start()
    await rig.clock.advance(0.01)
    rig.fake.finish((await rig.run(plain)).run_id)
    await rig.clock.advance(0.01)
    assert (await rig.run(plain)).status is RunStatus.COMPLETED
    assert hints == [], "a plain end hinted the workers"
    rig.fake.finish((await rig.run(flaky)).run_id, ok=False)
    failed_at = rig.clock.now()
    await rig.clock.advance(0.01)
    assert hints == [""], "a retry must wake the workers"
    await rig.clock.advance(1.1)
    first, retry = await rig.runs(flaky)
    assert first.status is RunStatus.RETRY_SCHEDULED
    assert retry.started_at is not None, "the retry did not start when due"
    assert retry.started_at - failed_at < timedelta(seconds=1.1)


# -- graceful stop -----------------------------------------------------------------------------


async def test_graceful_stop_hands_back_what_did_not_finish(rig: Rig) -> None:
    quick = await rig.submit("fake:finishes in the grace")
    stuck = await rig.submit("fake:never finishes")
    ahead = await rig.submit("fake:claimed ahead", due_in=LOOKAHEAD / 2)
    worker = rig.worker()
    await worker.start()
    await rig.clock.advance(0.01)
    assert worker.held == 3 and len(rig.fake.calls) == 2
    quick_run = (await rig.run(quick)).run_id
    stopping = asyncio.create_task(worker.stop())
    await rig.clock.advance(1.0)
    rig.fake.finish(quick_run)
    await rig.clock.run_until(stopping.done, within=GRACE + 1, step=0.5)
    await stopping
    assert (await rig.run(quick)).status is RunStatus.COMPLETED
    stuck_call = rig.fake.calls[(await rig.runs(stuck))[0].run_id]
    assert stuck_call.cancelled, "killed at the end of the grace"
    killed, again = await rig.runs(stuck)
    assert (killed.status, killed.error_message) == (RunStatus.INTERRUPTED, LOST_AT_SHUTDOWN)
    assert (again.status, again.attempt, again.interruptions) == (RunStatus.QUEUED, 2, 1)
    unstarted = await rig.run(ahead)
    assert (unstarted.status, unstarted.attempt, unstarted.started_at) == (
        RunStatus.QUEUED, 1, None,
    )  # fmt: skip
    assert worker.held == 0
    rig.workers.remove(worker)
