"""PostgreSQL only: per-user limits under concurrent writers from separate pools (separate
processes, as far as the database can tell) never overshoot (docs/limits.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chronoq.adapters.postgres import PostgresStore
from chronoq.errors import LimitExceededError
from chronoq.ports.dispatch import ClaimDueParams
from chronoq.ports.jobs import ListJobsParams

from .helpers import at, make_job

ROUNDS = 5


@pytest.fixture
async def two_stores(pg_database: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    stores = (
        PostgresStore(pg_database, min_size=4, max_size=8),
        PostgresStore(pg_database, min_size=4, max_size=8),
    )
    await asyncio.gather(*(s.start() for s in stores))
    try:
        yield stores
    finally:
        await asyncio.gather(*(s.close() for s in stores))


def _outcomes(results: list[Any]) -> tuple[int, int]:
    """(stored, refused); anything else fails the test."""
    for result in results:
        assert result is None or isinstance(result, LimitExceededError), result
    refused = sum(isinstance(r, LimitExceededError) for r in results)
    return len(results) - refused, refused


async def test_concurrent_submitters_never_exceed_the_active_limit(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    for round_ in range(ROUNDS):
        user = f"racer-{round_}"
        inserts = [
            two_stores[i % 2].insert_jobs(
                [make_job(user_id=user) for _ in range(1 + i % 3)], max_active_per_user=7
            )
            for i in range(16)
        ]
        results = await asyncio.gather(*inserts, return_exceptions=True)

        stored, refused = _outcomes(results)
        page = await two_stores[0].list_jobs(ListJobsParams(user_id=user, limit=1000))
        assert stored >= 1 and refused >= 1
        assert len(page.items) <= 7  # never over, whatever the interleaving
        assert len(page.items) >= 5  # and refused only when the next batch did not fit


async def test_concurrent_pickers_and_triggers_never_exceed_the_fires_limit(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    user = "busy"
    recurring = make_job(user_id=user, cron="@every 10s", next_fire_at=at(100))
    due = [make_job(user_id=user, next_fire_at=at(0), shard_id=i % 4) for i in range(40)]
    await two_stores[0].insert_jobs([recurring, *due])

    def claim(store: PostgresStore, shards: list[int]) -> Any:
        return store.claim_due(
            ClaimDueParams(shards=shards, now=at(1), horizon=at(1), max_fires_per_minute=6)
        )

    results = await asyncio.gather(
        claim(two_stores[0], [0, 1]),
        claim(two_stores[1], [2, 3]),
        claim(two_stores[0], [1, 2]),
        claim(two_stores[1], [3, 0]),
        *(
            two_stores[i % 2].trigger_job(user, recurring.job_id, at(1), max_fires_per_minute=6)
            for i in range(6)
        ),
        return_exceptions=True,
    )

    made = 0
    for result in results:
        assert not isinstance(result, BaseException) or isinstance(result, LimitExceededError)
        if isinstance(result, list):
            made += len(result)
        elif result is not None and not isinstance(result, BaseException):
            made += 1  # a manual run
    assert 1 <= made <= 6
    window = await two_stores[1].claim_due(
        ClaimDueParams(shards=None, now=at(2), horizon=at(2), max_fires_per_minute=6)
    )
    assert made + len(window) == 6  # the rest of the budget, and no more
