"""Cancel is found in the store, not only through the hint (issue "Foundations", item 4).

A real worker (real clock, real shell executor, real SQLite store) whose notifier drops
EVERY hint: nothing wakes it and no CANCEL message reaches it. A running ``cmd:`` job
whose job is cancelled must still be killed — process group and all — within one lease
renewal (lease/3), because every renewal reports the runs whose cancel was recorded.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from chronoq.adapters.memory.blob import MemoryBlobStore
from chronoq.adapters.sqlite import SqliteStore
from chronoq.domain.clock import SystemClock
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Job
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.executors import default_registry
from chronoq.observability.metrics import Metrics
from chronoq.ports.dispatch import ClaimDueParams
from chronoq.services.worker import Worker, WorkerConfig

LEASE = 1.5  # renewals every 0.5 s


class DeafNotifier:
    """A Notifier that loses every hint, in both directions."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def publish(self, channel: str, message: str = "") -> None:
        return None

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        return None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "chronoq.db", synchronous="OFF")
    await s.start()
    yield s
    await s.close()


async def _poll(predicate: Callable[[], object], within: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_running_shell_job_is_killed_at_lease_renewal_with_every_hint_dropped(
    store: SqliteStore, tmp_path: Path
) -> None:
    clock = SystemClock()
    worker = Worker(
        store, MemoryBlobStore(), DeafNotifier(), clock, Metrics(),
        default_registry(shell_enabled=True),
        WorkerConfig(worker_id="deaf", lease_seconds=LEASE, lookahead=0.0,
                     env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}),
    )  # fmt: skip
    pidfile = tmp_path / "child.pid"
    now = clock.now()
    job = Job(
        job_id=new_id(), user_id="u", project_id="p",
        payload=f"cmd:sleep 60 & echo $! > {pidfile}; wait", payload_ref=None,
        payload_size=40, cron_schedule=None, timezone=None, next_fire_at=now, shard_id=0,
        status=JobStatus.PENDING, max_retries=0, timeout_seconds=None,
        created_at=now, updated_at=now,
    )  # fmt: skip
    await store.insert_jobs([job])
    await store.claim_due(ClaimDueParams(shards=None, now=now, horizon=now + timedelta(1)))
    await worker.start()
    try:
        # No RUNS hint either: the worker finds the run on its idle re-check (<= 5 s).
        await _poll(lambda: pidfile.exists() and pidfile.read_text().strip(), within=10)
        child = int(pidfile.read_text())
        assert _alive(child)

        result = await store.cancel_job("u", job.job_id, clock.now())
        assert result is not None and result.running_run_ids  # the hint would go nowhere
        took = await _poll(lambda: not _alive(child), within=LEASE)
        assert took <= LEASE / 3 + 0.5, f"killed {took:.2f}s after the cancel"

        async def recorded() -> bool:
            runs = await store.list_runs("u", job.job_id)
            return bool(runs) and runs[0].status is RunStatus.CANCELLED

        deadline = time.monotonic() + 5
        while not await recorded():
            assert time.monotonic() < deadline, await store.list_runs("u", job.job_id)
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
