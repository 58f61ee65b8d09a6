"""The worker offloads large outputs (issue 8), in-process: MemoryStore, MemoryBlobStore and
a FakeClock. An output above ``output_offload_bytes`` UTF-8 bytes is put to the blob store
under ``outputs/<run_id>-<attempt>`` BEFORE the outcome is recorded, and the run keeps its
head and the reference; at or below the threshold (or with 0) it stays inline; when the put
fails the outcome is still recorded, with the whole output inline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from chronoq.adapters.memory import MemoryNotifier
from chronoq.adapters.memory.blob import MemoryBlobStore
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import BLOB_REF_PREFIX, LIST_OUTPUT_CHARS, Job, Run, output_key
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.executors import EchoExecutor, ExecutionRequest, ExecutionResult, ExecutorRegistry
from chronoq.observability.metrics import Metrics
from chronoq.ports.dispatch import ClaimDueParams
from chronoq.services.worker import Worker, WorkerConfig
from chronoq.testing import FakeClock, MemoryStore

USER = "alice"
THRESHOLD = 4096


class SizedExecutor:
    """``sized:<n>``: finishes at once with ``n`` characters of 2-byte 'é' and a marker."""

    prefix = "sized:"

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        count = int(request.payload.removeprefix(self.prefix))
        return ExecutionResult(succeeded=True, output="é" * count, exit_code=0)


class WatchedBlob(MemoryBlobStore):
    """Records the run's status in the store at the moment of each put."""

    def __init__(self, clock: FakeClock, store: MemoryStore) -> None:
        super().__init__(clock)
        self.store = store
        self.status_at_put: dict[str, RunStatus] = {}

    async def put(self, key: str, data: bytes) -> None:
        run_id = key.removeprefix("outputs/").rsplit("-", 1)[0]
        self.status_at_put[key] = self.store._tables.runs[run_id].status
        await super().put(key, data)


@dataclass
class Rig:
    clock: FakeClock
    store: MemoryStore
    blob: WatchedBlob
    workers: list[Worker] = field(default_factory=list)

    async def run_one(self, payload: str, *, offload: int = THRESHOLD) -> Run:
        """Submit a job due now, let a worker run it to its recorded outcome, return its run."""
        now = self.clock.now()
        job = Job(
            job_id=new_id(), user_id=USER, project_id="p", payload=payload, payload_ref=None,
            payload_size=len(payload), cron_schedule=None, timezone=None, next_fire_at=now,
            shard_id=0, status=JobStatus.PENDING, max_retries=0, timeout_seconds=None,
            created_at=now, updated_at=now,
        )  # fmt: skip
        await self.store.insert_jobs([job])
        await self.store.claim_due(ClaimDueParams(shards=None, now=now, horizon=now))
        registry = ExecutorRegistry(EchoExecutor())
        registry.register(SizedExecutor())
        worker = Worker(
            self.store, self.blob, MemoryNotifier(), self.clock, Metrics(), registry,
            WorkerConfig(worker_id=f"w{len(self.workers)}", output_offload_bytes=offload,
                         shutdown_grace=1.0),
        )  # fmt: skip
        self.workers.append(worker)
        await worker.start()

        async def finished() -> Run:
            (run,) = await self.store.list_runs(USER, job.job_id)
            return run

        for _ in range(200):
            await self.clock.advance(0.01)
            run = await finished()
            if run.status is RunStatus.COMPLETED:
                return run
        raise AssertionError(f"the run did not complete: {run}")


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    store = MemoryStore()
    await store.start()
    blob = WatchedBlob(clock, store)
    await blob.start()
    built = Rig(clock, store, blob)
    yield built
    for worker in built.workers:
        task = asyncio.create_task(worker.stop())
        await clock.run_until(task.done, within=10, step=0.5)
        await task
    await store.close()


async def test_an_output_above_the_threshold_goes_to_the_blob_before_the_outcome(
    rig: Rig,
) -> None:
    run = await rig.run_one(f"sized:{THRESHOLD // 2 + 1}")  # 4,098 bytes

    key = output_key(run.run_id, run.attempt)
    assert run.output_ref == BLOB_REF_PREFIX + key
    assert await rig.blob.get(key) == ("é" * (THRESHOLD // 2 + 1)).encode()
    assert rig.blob.status_at_put == {key: RunStatus.RUNNING}, "put before the outcome"
    assert run.output_truncated is True
    assert run.output == "é" * min(THRESHOLD // 2 + 1, LIST_OUTPUT_CHARS)
    assert await rig.store.output_ref(USER, run.job_id, run.run_id) == run.output_ref
    # the store keeps only the head inline
    inline = await rig.store.read_output(USER, run.job_id, run.run_id, 0, 10**9)
    assert inline is not None and len(inline) == LIST_OUTPUT_CHARS + 1


async def test_an_output_at_the_threshold_stays_inline(rig: Rig) -> None:
    run = await rig.run_one(f"sized:{THRESHOLD // 2}")  # exactly 4,096 bytes

    assert run.output_ref is None
    assert rig.blob.status_at_put == {}
    whole = await rig.store.read_output(USER, run.job_id, run.run_id, 0, 10**9)
    assert whole == "é" * (THRESHOLD // 2)


async def test_zero_never_offloads(rig: Rig) -> None:
    run = await rig.run_one("sized:100000", offload=0)

    assert run.output_ref is None
    assert rig.blob.status_at_put == {}
    assert run.output_truncated is True  # only the list's cut of an inline output


async def test_a_failed_put_keeps_the_whole_output_inline_and_the_outcome(rig: Rig) -> None:
    await rig.blob.close()  # the blob store is down: every put is UnavailableError

    run = await rig.run_one("sized:50000")

    assert run.status is RunStatus.COMPLETED
    assert run.output_ref is None
    whole = await rig.store.read_output(USER, run.job_id, run.run_id, 0, 10**9)
    assert whole == "é" * 50000
    assert run.completed_at is not None and run.started_at is not None
    assert run.completed_at - run.started_at < timedelta(seconds=1), "no waiting on the blob"
