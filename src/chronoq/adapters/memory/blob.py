"""``MemoryBlobStore``: the Blob port in a dictionary, for tests and in-process stacks."""

from __future__ import annotations

from chronoq.errors import NotFoundError, UnavailableError


class MemoryBlobStore:
    """Immutable objects by key, in memory; unavailable before ``start`` and after ``close``
    (closing keeps the objects, like a server that went away and came back)."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
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

    async def get(self, key: str) -> bytes:
        self._check_open()
        try:
            return self._objects[key]
        except KeyError:
            raise NotFoundError(f"no blob {key!r}") from None

    async def delete(self, key: str) -> None:
        self._check_open()
        self._objects.pop(key, None)

    def keys(self) -> list[str]:
        """Every key stored (for assertions)."""
        return sorted(self._objects)
