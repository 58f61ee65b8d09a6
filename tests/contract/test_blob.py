"""The BlobStore contract (ports/blob.py), run against every adapter: the folder, memory
and S3 (a real SeaweedFS started for the session, tests/support/s3_server.py). The last
tests pair every blob store with every job store (``store``: SQLite, PostgreSQL,
memory): the leader's orphan sweep and retention delete exactly the right objects.

Objects are immutable bytes by key: ``put`` is durable before it returns, ``get``
returns exactly what was put (any bytes, NUL and invalid UTF-8 included) or raises
``NotFoundError``, ``delete`` of a missing key is fine, and the lifecycle calls are
safe twice; ``list_objects`` pages through keys in order, with their write times.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from chronoq.adapters.fs import FsBlobStore
from chronoq.adapters.memory.blob import MemoryBlobStore
from chronoq.adapters.s3 import blob_store
from chronoq.domain.clock import Clock, SystemClock
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import BLOB_REF_PREFIX, Job, JobChanges
from chronoq.domain.states import RunStatus
from chronoq.errors import NotFoundError
from chronoq.ports.blob import BlobStore
from chronoq.ports.store import Store
from chronoq.services.orphans import OrphanSweep
from tests.support.s3_server import aws_env_fixture, s3_server_fixture, s3_url  # noqa: F401
from tests.support.waiting import poll

from .helpers import T0, claim_due, claim_runs, make_job, outcome, retention_coordinator


@pytest.fixture(params=["fs", "memory", "s3"])
async def blob(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    store: BlobStore
    if request.param == "s3":
        request.getfixturevalue("aws_env")
        store = blob_store(s3_url(request.getfixturevalue("s3_server")))
    elif request.param == "fs":
        store = FsBlobStore(tmp_path / "blobs")
    else:
        store = MemoryBlobStore()
    await store.start()
    await store.start()  # safe twice
    yield store
    await store.close()
    await store.close()


def key() -> str:
    return f"payloads/{uuid.uuid4()}"


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", b"a\x00b\xff\xfe\x80", bytes(range(256)) * 8, b"x" * (3 * 1024 * 1024)],
    ids=["empty", "text", "nul-and-invalid-utf8", "every-byte", "3MiB"],
)
async def test_what_is_put_is_what_is_got(blob: BlobStore, data: bytes) -> None:
    k = key()
    await blob.put(k, data)
    assert await blob.get(k) == data


async def test_a_missing_key_is_not_found(blob: BlobStore) -> None:
    with pytest.raises(NotFoundError):
        await blob.get(key())


async def test_delete_removes_and_a_missing_delete_is_fine(blob: BlobStore) -> None:
    k = key()
    await blob.put(k, b"doomed")
    await blob.delete(k)
    with pytest.raises(NotFoundError):
        await blob.get(k)
    await blob.delete(k)  # already gone: fine
    await blob.delete(key())  # never existed: fine


async def test_keys_are_independent(blob: BlobStore) -> None:
    a, b = key(), key()
    await blob.put(a, b"A")
    await blob.put(b, b"B")
    await blob.delete(a)
    assert await blob.get(b) == b"B"


async def test_list_pages_through_keys_in_order_with_write_times(blob: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)  # S3 stamps whole seconds
    keys = sorted(f"payloads/{uuid.uuid4()}" for _ in range(7))
    for k in keys:
        await blob.put(k, b"x")
    await blob.put("other/elsewhere", b"y")
    first = await blob.list_objects("payloads/", limit=3)
    assert [e.key for e in first] == keys[:3]
    rest = await blob.list_objects("payloads/", start_after=first[-1].key, limit=100)
    assert [e.key for e in rest] == keys[3:]  # fewer than the limit: complete
    after = datetime.now(UTC) + timedelta(seconds=5)
    assert all(before <= e.modified <= after for e in first + rest)
    assert [e.key for e in await blob.list_objects("other/")] == ["other/elsewhere"]
    assert await blob.list_objects("nothing-here/") == []
    await blob.delete(keys[0])
    assert keys[0] not in [e.key for e in await blob.list_objects("payloads/")]


# -- the blob store with a job store: orphan sweep and retention (every pair) ----------------


class _HourLater:
    """A clock an hour ahead: every object just put is an hour old to the sweep."""

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(hours=1)


def _job_with_blob() -> Job:
    job = make_job(payload=None)
    return dataclasses.replace(job, payload_ref=f"{BLOB_REF_PREFIX}payloads/{job.job_id}")


async def test_the_orphan_sweep_deletes_old_payloads_no_job_references_and_nothing_else(
    blob: BlobStore, store: Store
) -> None:
    referenced = _job_with_blob()
    await store.insert_jobs([referenced])
    orphans = [f"payloads/{new_id()}" for _ in range(5)]
    foreign = ["payloads/not-a-job-id", f"elsewhere/{new_id()}"]
    for k in [f"payloads/{referenced.job_id}", *orphans, *foreign]:
        await blob.put(k, b"x")

    young = OrphanSweep(store, blob, SystemClock(), min_age=600)
    assert await young.sweep() == 0  # too young to be orphans: a row may still come

    sweep = OrphanSweep(store, blob, cast(Clock, _HourLater()), min_age=600, page=2)
    assert await sweep.sweep() == len(orphans)  # paged through, two keys at a time
    left = [e.key for e in await blob.list_objects("")]
    assert sorted(left) == sorted([f"payloads/{referenced.job_id}", *foreign])
    assert await sweep.sweep() == 0  # and again from the start: the referenced one stays


async def test_the_sweep_keeps_a_changed_payload_and_collects_the_replaced_one(
    blob: BlobStore, store: Store
) -> None:
    """A PATCH puts ``payloads/<id>.<rev>`` and leaves the old object to the sweep."""
    job = _job_with_blob()
    await store.insert_jobs([job])
    old, new = f"payloads/{job.job_id}", f"payloads/{job.job_id}.{new_id()}"
    failed = f"payloads/{job.job_id}.{new_id()}"  # a PATCH that failed after its put
    for key in (old, new, failed):
        await blob.put(key, b"x")
    changes = JobChanges(
        fields=frozenset({"payload"}), payload_ref=BLOB_REF_PREFIX + new, payload_size=1
    )
    assert await store.update_job(job.user_id, job.job_id, changes, T0) is not None
    assert await store.payload_refs_of([job.job_id, new_id(), "not-an-id"]) == {
        BLOB_REF_PREFIX + new
    }

    # The old object stays while young: a run claimed before the change still reads it.
    assert await OrphanSweep(store, blob, SystemClock(), min_age=600).sweep() == 0
    sweep = OrphanSweep(store, blob, cast(Clock, _HourLater()), min_age=600)
    assert await sweep.sweep() == 2
    assert [e.key for e in await blob.list_objects("payloads/")] == [new]


async def test_retention_deletes_a_purged_jobs_payload(blob: BlobStore, store: Store) -> None:
    done = _job_with_blob()
    await store.insert_jobs([done])
    await blob.put(f"payloads/{done.job_id}", b"payload")
    await claim_due(store, T0)
    [claimed] = await claim_runs(store, "w1", T0, limit=10)
    assert await store.complete_runs([outcome(claimed, RunStatus.COMPLETED)]) == [True]

    coordinator = retention_coordinator(store, blob)
    await coordinator.start()
    try:

        async def gone() -> bool:
            return await store.get_job(done.user_id, done.job_id) is None and not any(
                e.key == f"payloads/{done.job_id}" for e in await blob.list_objects("payloads/")
            )

        assert await poll(gone, 10), "retention must delete the job and then its blob"
    finally:
        await coordinator.stop()
