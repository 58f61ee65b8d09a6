"""``MemoryBlobStore``: the Blob port in a dictionary, for tests and in-process stacks."""

from __future__ import annotations

from datetime import UTC, datetime

from chronoq.domain.clock import Clock
from chronoq.errors import NotFoundError, UnavailableError
from chronoq.ports.blob import BlobEntry


class MemoryBlobStore:
    """Immutable objects by key, in memory; unavailable before ``start`` and after ``close``
    (closing keeps the objects, like a server that went away and came back)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._objects: dict[str, bytes] = {}
        self._modified: dict[str, datetime] = {}
        self._clock = clock
        self._open = False

    async def start(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise UnavailableError("the in-memory blob store is not started (or closed)")

    async def put(self, key: str, data: bytes) -> None:
        self._check_open()
        self._objects[key] = bytes(data)
        self._modified[key] = self._clock.now() if self._clock else datetime.now(UTC)

    async def get(self, key: str) -> bytes:
        self._check_open()
        try:
            return self._objects[key]
        except KeyError:
            raise NotFoundError(f"no blob {key!r}") from None

    async def delete(self, key: str) -> None:
        self._check_open()
        self._objects.pop(key, None)
        self._modified.pop(key, None)

    async def list_objects(
        self, prefix: str, *, start_after: str = "", limit: int = 1000
    ) -> list[BlobEntry]:
        self._check_open()
        keys = sorted(k for k in self._objects if k.startswith(prefix) and k > start_after)
        return [BlobEntry(k, self._modified[k]) for k in keys[:limit]]

    def keys(self) -> list[str]:
        """Every key stored (for assertions)."""
        return sorted(self._objects)
