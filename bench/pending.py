"""Jobs written straight into a cluster's store with COPY: many pending, or many due at once.

What a bulk import (or a migration from another scheduler) would do, and fast enough to
load 10M rows (a few minutes): text-format ``COPY jobs`` in chunks of ``CHUNK`` rows, one
transaction each. Rows are what the api writes for a one-shot no-op job (UUIDv7 ids, the
shard ``shard_of(job_id)``, status PENDING); the other columns keep their defaults.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chronoq.adapters.postgres.notify import PREFIX
from chronoq.domain.jobs import shard_of
from chronoq.ports.notify import FIRES

CHUNK = 200_000
COLUMNS = (
    "job_id", "user_id", "project_id", "payload", "payload_size", "next_fire_at", "shard_id",
    "status", "max_retries", "created_at", "updated_at",
)  # fmt: skip
PENDING_USER = "bench-pending"
PENDING_EVERY = timedelta(seconds=3)
"""Pending jobs are due one every 3 s from a day ahead: 10M of them span about a year."""


def _job_id(ms: int, serial: int) -> str:
    """A UUIDv7: ``ms`` milliseconds, then ``serial`` (unique per load) as its random part."""
    text = f"{ms:012x}7{(serial >> 60) & 0xFFF:03x}8{serial & 0xFFFFFFFFFFFFFFF:015x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _rows(
    first: int, last: int, user: str, due: Callable[[int], datetime], shards: int, ms: int
) -> bytes:
    created = datetime.now(UTC).isoformat()
    lines = []
    for serial in range(first, last):
        job_id = _job_id(ms, serial)
        lines.append(
            f"{job_id}\t{user}\tbench\tnoop\t4\t{due(serial).isoformat()}"
            f"\t{shard_of(job_id, shards)}\tPENDING\t0\t{created}\t{created}\n"
        )
    return "".join(lines).encode()


async def _copy(
    db: Any, first: int, last: int, user: str, due: Callable[[int], datetime], shards: int
) -> None:
    ms = int(time.time() * 1000) - 86_400_000  # older than any id the api hands out now

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(first, last, 20_000):
            yield _rows(start, min(start + 20_000, last), user, due, shards, ms)

    async with db.acquire() as conn:
        await conn.copy_to_table("jobs", source=chunks(), columns=COLUMNS, format="text")


async def load_pending(db: Any, have: int, want: int, shard_count: int) -> float:
    """Top ``PENDING_USER``'s pending jobs up from ``have`` to ``want``; the seconds taken."""
    started = time.perf_counter()
    origin = datetime.now(UTC) + timedelta(days=1)

    def due(serial: int) -> datetime:
        return origin + serial * PENDING_EVERY

    for first in range(have, want, CHUNK):
        last = min(first + CHUNK, want)
        await _copy(db, first, last, PENDING_USER, due, shard_count)
        print(f"[bench]   pending jobs: {last:,}/{want:,}", file=sys.stderr, flush=True)
    return time.perf_counter() - started


async def load_due(db: Any, user: str, count: int, fire_at: float, shard_count: int) -> float:
    """``count`` jobs of ``user`` all due at the instant ``fire_at``, then the hint a
    submission sends (pickers re-check their sleep at once); the seconds taken."""
    started = time.perf_counter()
    due = datetime.fromtimestamp(fire_at, UTC)
    base = int(time.time_ns() // 1000)  # serials apart from any other load's
    await _copy(db, base, base + count, user, lambda _: due, shard_count)
    await db.execute("SELECT pg_notify($1, '')", PREFIX + FIRES)
    return time.perf_counter() - started
