"""Offloaded run outputs and the blob store's housekeeping, on every job store (SQLite,
PostgreSQL, memory) with the folder and memory blob stores (S3 end to end is in
tests/integration/test_output_offload.py): the leader's orphan sweep deletes old
``outputs/<run_id>-<attempt>`` objects that no run references — and only those — and
retention deletes a purged run's output object."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from chronoq.adapters.fs import FsBlobStore
from chronoq.adapters.memory.blob import MemoryBlobStore
from chronoq.domain.clock import Clock, SystemClock
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import BLOB_REF_PREFIX, output_key
from chronoq.domain.states import RunStatus
from chronoq.ports.blob import BlobStore
from chronoq.ports.store import Store
from chronoq.services.orphans import OrphanSweep
from tests.support.waiting import poll

from .helpers import make_job, outcome, retention_coordinator, submit_and_lease


@pytest.fixture(params=["fs", "memory"])
async def blob(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    store: BlobStore = (
        FsBlobStore(tmp_path / "blobs") if request.param == "fs" else MemoryBlobStore()
    )
    await store.start()
    yield store
    await store.close()


class _HourLater:
    """Every object just put is an hour old to the sweep."""

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(hours=1)


async def _offloaded_run(store: Store, blob: BlobStore) -> str:
    """A finished run whose output is in the blob store; its key."""
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1", started=True)
    key = output_key(claimed.run_id, claimed.attempt)
    await blob.put(key, b"the whole output")
    done = dataclasses.replace(
        outcome(claimed, RunStatus.COMPLETED, output="the"), output_ref=BLOB_REF_PREFIX + key
    )
    assert await store.complete_runs([done]) == [True]
    return key


async def test_the_sweep_deletes_old_outputs_no_run_references_and_nothing_else(
    blob: BlobStore, store: Store
) -> None:
    referenced = await _offloaded_run(store, blob)
    # a put whose outcome was never recorded (worker died), for a missing run ...
    orphans = [output_key(new_id(), 1), output_key(new_id(), 3)]
    # ... and one for a run that exists but whose outcome was refused (stale): no ref
    stale = make_job()
    claimed = await submit_and_lease(store, stale, "w1", started=True)
    orphans.append(output_key(claimed.run_id, claimed.attempt))
    foreign = ["outputs/not-a-run-1", f"outputs/{new_id()}", f"outputs/{new_id()}-x"]
    for key in [*orphans, *foreign]:
        await blob.put(key, b"x")

    assert await OrphanSweep(store, blob, SystemClock(), min_age=600).sweep() == 0  # young

    sweep = OrphanSweep(store, blob, cast(Clock, _HourLater()), min_age=600, page=2)
    assert await sweep.sweep() == len(orphans)
    left = sorted(e.key for e in await blob.list_objects("outputs/"))
    assert left == sorted([referenced, *foreign])
    assert await sweep.sweep() == 0


async def test_retention_deletes_a_purged_runs_output(blob: BlobStore, store: Store) -> None:
    key = await _offloaded_run(store, blob)  # completed at T0, long before now - 1 h
    coordinator = retention_coordinator(store, blob)
    await coordinator.start()
    try:

        async def gone() -> bool:
            return all(e.key != key for e in await blob.list_objects("outputs/"))

        assert await poll(gone, 10), "retention must delete the run and then its output"
    finally:
        await coordinator.stop()
