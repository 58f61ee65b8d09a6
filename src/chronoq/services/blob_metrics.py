"""``CountedBlobStore``: counts every blob store call in the seed's ``s3_operations_total``.

Wrapping the node's blob store once (``runtime.node``) counts every call, whoever makes
it and whether it succeeds (a failed call is still an operation, e.g. a download the
worker retries), with four bounded label values: ``upload`` (put), ``download`` (get),
``delete`` and ``list``.
"""

from __future__ import annotations

from chronoq.observability.metrics import Metrics
from chronoq.ports.blob import BlobEntry, BlobStore


class CountedBlobStore:
    def __init__(self, inner: BlobStore, metrics: Metrics) -> None:
        self.inner = inner
        ops = metrics.s3_operations
        self._put, self._get = ops.labels("upload"), ops.labels("download")
        self._delete, self._list = ops.labels("delete"), ops.labels("list")

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def put(self, key: str, data: bytes) -> None:
        self._put.inc()
        await self.inner.put(key, data)

    async def get(self, key: str) -> bytes:
        self._get.inc()
        return await self.inner.get(key)

    async def delete(self, key: str) -> None:
        self._delete.inc()
        await self.inner.delete(key)

    async def list_objects(
        self, prefix: str, *, start_after: str = "", limit: int = 1000
    ) -> list[BlobEntry]:
        self._list.inc()
        return await self.inner.list_objects(prefix, start_after=start_after, limit=limit)
