"""The one import of the PostgreSQL driver, with an actionable message when it is missing."""

from __future__ import annotations

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the PostgreSQL store needs asyncpg: pip install 'chronoq[postgres]'"
    ) from exc

__all__ = ["asyncpg"]
