"""``--idempotency-retention``: the leader's retention forgets keys older than it (issue
9.7), on a real SQLite store with a real coordinator ticking every 50 ms. The job stays;
only its key is forgotten, so the key may name a new job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chronoq.adapters.memory.blob import MemoryBlobStore
from chronoq.adapters.memory.coordination import MemoryCoordination
from chronoq.adapters.memory.notify import MemoryNotifier
from chronoq.adapters.sqlite.store import SqliteStore
from chronoq.domain.clock import SystemClock
from chronoq.domain.retry import RetryPolicy
from chronoq.observability.metrics import Metrics
from chronoq.services.coordinator import Coordinator, CoordinatorConfig
from tests.contract.helpers import policy_job
from tests.support.waiting import poll


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    sqlite = SqliteStore(tmp_path / "chronoq.db")
    await sqlite.start()
    yield sqlite
    await sqlite.close()


def _leader(store: SqliteStore, keep_keys: float) -> Coordinator:
    config = CoordinatorConfig(
        node_id="n1", lease_seconds=30, retry=RetryPolicy(), recover_orphans=False,
        retention_hours=0, purge_every=0.05, idempotency_retention=keep_keys,
    )  # fmt: skip
    return Coordinator(
        store, store, MemoryBlobStore(), MemoryNotifier(), MemoryCoordination(), SystemClock(),
        Metrics(), config,
    )  # fmt: skip


async def _keyed(store: SqliteStore, key: str, age: timedelta) -> str:
    created = datetime.now(UTC) - age
    job = policy_job(idempotency_key=key, request_hash="h-" + key, created_at=created)
    await store.insert_jobs([job])
    return job.job_id


async def test_keys_older_than_the_retention_are_forgotten(store: SqliteStore) -> None:
    old = await _keyed(store, "old-key", timedelta(hours=2))
    new = await _keyed(store, "new-key", timedelta(minutes=1))
    leader = _leader(store, keep_keys=3600)
    await leader.start()
    try:

        async def forgotten() -> bool:
            return await store.job_by_idempotency_key("alice", "old-key") is None

        assert await poll(forgotten, 10), "the leader never forgot the hour-old key"
    finally:
        await leader.stop()
    kept = await store.job_by_idempotency_key("alice", "new-key")
    assert kept is not None and kept.job_id == new
    assert await store.get_job("alice", old) is not None  # the job itself stays
    await _keyed(store, "old-key", timedelta(0))  # the key may name a new job now


async def test_zero_keeps_keys_forever(store: SqliteStore) -> None:
    await _keyed(store, "ancient", timedelta(days=400))
    leader = _leader(store, keep_keys=0)
    await leader.start()
    try:

        async def ticked() -> bool:  # retention runs (it purges nothing: retention_hours 0)
            return leader.is_leader

        assert await poll(ticked, 10)
        for _ in range(5):  # several purge ticks
            await SystemClock().sleep(0.06)
    finally:
        await leader.stop()
    assert await store.job_by_idempotency_key("alice", "ancient") is not None
