"""The scale bench's COPY loader (``bench.pending``) writes jobs the PostgreSQL store takes
for its own: what the scale model measures is the real fire path over real rows."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.pending import PENDING_USER, load_due, load_pending
from chronoq.adapters.postgres import PostgresStore
from chronoq.domain.jobs import shard_of
from chronoq.ports.dispatch import ClaimDueParams


async def test_loaded_jobs_are_valid_pending_and_due_jobs(pg_database: str) -> None:
    pool = await asyncpg.create_pool(pg_database, min_size=1, max_size=2)
    store = PostgresStore(pg_database, min_size=1, max_size=2)
    await store.start()
    try:
        await load_pending(pool, 0, 1_500, 16)
        await load_pending(pool, 1_500, 2_000, 16)  # topped up: new rows only
        fire_at = float(int(time.time()) + 60)
        await load_due(pool, "storm", 300, fire_at, 16)
        rows = await pool.fetch("SELECT job_id, user_id, shard_id, next_fire_at FROM jobs")
        assert len(rows) == 2_300
        ids = [r["job_id"] for r in rows]
        assert len(set(ids)) == len(ids)
        assert {uuid.UUID(str(i)).version for i in ids} == {7}
        assert {uuid.UUID(str(i)).variant for i in ids} == {uuid.RFC_4122}
        assert all(r["shard_id"] == shard_of(str(r["job_id"]), 16) for r in rows)
        pending = [r for r in rows if r["user_id"] == PENDING_USER]
        assert len(pending) == 2_000
        assert min(r["next_fire_at"] for r in pending) > datetime.now(UTC) + timedelta(hours=23)
        due = datetime.fromtimestamp(fire_at, UTC)
        assert {r["next_fire_at"] for r in rows if r["user_id"] == "storm"} == {due}

        # The store fires exactly the due ones, as it would jobs the api wrote.
        fired = await store.claim_due(
            ClaimDueParams(shards=None, now=due, horizon=due, limit=10_000)
        )
        assert len(fired) == 300
        assert {f.user_id for f in fired} == {"storm"}
        assert {f.scheduled_for for f in fired} == {due}
    finally:
        await store.close()
        await pool.close()
