"""Role tests run in-process on ``chronoq.testing.roles.Stack``: in-memory adapters and a
``FakeClock``, so every wait is fake time and no test sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest


@pytest.fixture
async def stack() -> AsyncIterator[Any]:
    """A started ``Stack`` (member ttl 3 s, lease 30 s, 16 shards); every role built on it
    is stopped at the end."""
    try:
        from chronoq.testing.roles import Stack
    except ImportError as exc:  # pragma: no cover - only while the memory adapters are written
        pytest.skip(f"chronoq.testing.roles is not importable yet: {exc}")
    async with Stack() as built:
        yield built
