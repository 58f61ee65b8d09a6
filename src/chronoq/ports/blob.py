"""The Blob port: offloaded payloads (and, later, large outputs)."""

from __future__ import annotations

from typing import Protocol


class BlobStore(Protocol):
    """Immutable objects by key. Adapters: ``FsBlobStore`` (embedded), S3 (distributed)."""

    async def start(self) -> None:
        """Connect / create what is needed. Called once before use."""
        ...

    async def close(self) -> None:
        """Release resources; safe to call twice."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` durably under ``key`` before returning (a row may point at it next)."""
        ...

    async def get(self, key: str) -> bytes:
        """Return the object; raise ``NotFoundError`` if missing, ``UnavailableError`` if down."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; missing is fine."""
        ...
