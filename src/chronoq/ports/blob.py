"""The Blob port: offloaded payloads (and, later, large outputs).

``list_objects`` exists for the leader's orphan sweep (``services.orphans``): objects
put whose job row never came (a crash or a failed insert between put and insert).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BlobEntry:
    key: str
    modified: datetime
    """When the object was last written (timezone-aware), by the blob store's clock."""


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

    async def list_objects(
        self, prefix: str, *, start_after: str = "", limit: int = 1000
    ) -> list[BlobEntry]:
        """Up to ``limit`` objects whose key starts with ``prefix`` and sorts after
        ``start_after``, in key order (fewer than ``limit``: the listing is complete).
        ``UnavailableError`` if down."""
        ...
