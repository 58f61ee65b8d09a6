"""The BlobStore contract (ports/blob.py), run against every adapter: the folder and memory.

Objects are immutable bytes by key: ``put`` is durable before it returns, ``get``
returns exactly what was put (any bytes, NUL and invalid UTF-8 included) or raises
``NotFoundError``, ``delete`` of a missing key is fine, and the lifecycle calls are
safe twice.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chronoq.adapters.fs import FsBlobStore
from chronoq.adapters.memory.blob import MemoryBlobStore
from chronoq.errors import NotFoundError
from chronoq.ports.blob import BlobStore


@pytest.fixture(params=["fs", "memory"])
async def blob(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    store: BlobStore = (
        FsBlobStore(tmp_path / "blobs") if request.param == "fs" else MemoryBlobStore()
    )
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
