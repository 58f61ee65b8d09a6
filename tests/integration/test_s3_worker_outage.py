"""A blob store outage seen by the worker, in-process on fake time (MemoryStore,
MemoryBlobStore closed = unavailable, FakeClock): the download is retried with capped
backoff under a renewed lease, never using an attempt; the run completes when the blob
store is back, is CANCELLED by a cancel, and is handed back unstarted at a graceful
stop. The real-S3 version of the first case is in test_s3_blob.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from prometheus_client import generate_latest

from chronoq.adapters.memory.blob import MemoryBlobStore
from chronoq.adapters.memory.notify import MemoryNotifier
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import BLOB_REF_PREFIX, Job, Run
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.executors import EchoExecutor, ExecutorRegistry
from chronoq.observability.metrics import Metrics
from chronoq.ports.dispatch import ClaimDueParams
from chronoq.services.blob_metrics import CountedBlobStore
from chronoq.services.worker import Worker, WorkerConfig
from chronoq.testing import FakeClock, MemoryStore
from tests.support.metrics import metric_sum

USER = "alice"
LEASE = 30.0
GRACE = 5.0
PAYLOAD = "offloaded payload " + "x" * 2000


@dataclass
class Rig:
    clock: FakeClock = field(default_factory=FakeClock)
    store: MemoryStore = field(default_factory=MemoryStore)
    blob: MemoryBlobStore = field(default_factory=MemoryBlobStore)
    metrics: Metrics = field(default_factory=Metrics)
    worker: Worker | None = None

    def start_worker(self) -> Worker:
        self.worker = Worker(
            self.store, CountedBlobStore(self.blob, self.metrics), MemoryNotifier(), self.clock,
            self.metrics, ExecutorRegistry(EchoExecutor()),
            WorkerConfig(worker_id="w1", lease_seconds=LEASE, shutdown_grace=GRACE),
        )  # fmt: skip
        return self.worker

    async def submit(self) -> str:
        """A one-shot job with an offloaded payload and ``max_retries`` 0, its run QUEUED."""
        now = self.clock.now()
        job_id = new_id()
        await self.blob.put(f"payloads/{job_id}", PAYLOAD.encode())
        job = Job(
            job_id=job_id, user_id=USER, project_id="p", payload=None,
            payload_ref=f"{BLOB_REF_PREFIX}payloads/{job_id}", payload_size=len(PAYLOAD),
            cron_schedule=None, timezone=None, next_fire_at=now, shard_id=0,
            status=JobStatus.PENDING, max_retries=0, timeout_seconds=None, created_at=now,
            updated_at=now,
        )  # fmt: skip
        await self.store.insert_jobs([job])
        await self.store.claim_due(ClaimDueParams(shards=None, now=now, horizon=now))
        return job_id

    async def runs(self, job_id: str) -> list[Run]:
        return sorted(await self.store.list_runs(USER, job_id), key=lambda r: r.attempt)

    def downloads(self) -> float:
        text = generate_latest(self.metrics.registry).decode()
        return metric_sum(text, "s3_operations_total", operation="download")


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    await rig.store.start()
    await rig.blob.start()
    yield rig
    if rig.worker is not None:
        task = asyncio.create_task(rig.worker.stop())
        await rig.clock.run_until(task.done, within=GRACE + 5, step=0.5)
        await task
    await rig.store.close()


async def _outage(rig: Rig) -> tuple[str, Run]:
    """Submit, take the blob store down, let the worker try for 100 fake seconds."""
    job_id = await rig.submit()
    await rig.blob.close()  # unavailable from now on
    await rig.start_worker().start()
    await rig.clock.advance(100)
    [run] = await rig.runs(job_id)
    return job_id, run


async def test_the_download_is_retried_under_a_live_lease_and_uses_no_attempt(rig: Rig) -> None:
    job_id, run = await _outage(rig)
    assert run.status is RunStatus.RUNNING and run.started_at is None, run
    # 0.2 s doubling to a 5 s cap: about 25 tries in 100 s, not thousands, not one.
    assert 10 <= rig.downloads() <= 60, rig.downloads()
    assert run.lease_until is not None
    assert run.lease_until > rig.clock.now() + timedelta(seconds=LEASE / 2), "heartbeats go on"

    await rig.blob.start()  # back
    await rig.clock.run_until(
        lambda: rig.worker is not None and rig.worker.held == 0, within=10, step=0.1
    )
    await rig.clock.advance(1)  # the completer records the outcome
    runs = await rig.runs(job_id)
    assert [(r.status, r.attempt) for r in runs] == [(RunStatus.COMPLETED, 1)], runs
    assert runs[0].output == "Success: " + PAYLOAD


async def test_a_cancel_during_the_outage_ends_the_run_cancelled(rig: Rig) -> None:
    job_id, _ = await _outage(rig)
    assert await rig.store.cancel_job(USER, job_id, rig.clock.now()) is not None
    await rig.clock.advance(LEASE / 3 + 1)  # found at the next lease renewal
    await rig.clock.advance(1)
    runs = await rig.runs(job_id)
    assert [(r.status, r.attempt) for r in runs] == [(RunStatus.CANCELLED, 1)], runs


async def test_a_graceful_stop_during_the_outage_hands_the_run_back_unstarted(rig: Rig) -> None:
    job_id, _ = await _outage(rig)
    assert rig.worker is not None
    task = asyncio.create_task(rig.worker.stop())
    await rig.clock.run_until(task.done, within=GRACE + 5, step=0.5)
    await task
    rig.worker = None
    runs = await rig.runs(job_id)
    assert [(r.status, r.attempt, r.started_at) for r in runs] == [(RunStatus.QUEUED, 1, None)], (
        runs
    )  # the same attempt, to be claimed again: nothing was used up
