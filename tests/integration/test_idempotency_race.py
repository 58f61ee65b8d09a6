"""Concurrent duplicates of a keyed submission, made to race for certain (issue 9.7).

Over HTTP the first submission is usually stored before a duplicate even asks, so the
race is rare there. Here the api runs in-process on a real SQLite store whose
``job_by_idempotency_key`` is made blind (it answers None, as it would to a duplicate
that asked before the first insert committed): every duplicate then reaches the insert,
and the store's refusal must turn into the original job (same body) or a 409 (another
body) — never a 503, never a second job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronoq.adapters.fs.blob import FsBlobStore
from chronoq.adapters.memory.notify import MemoryNotifier
from chronoq.adapters.sqlite.store import SqliteStore
from chronoq.domain.clock import SystemClock
from chronoq.domain.jobs import Job
from chronoq.observability.metrics import Metrics
from chronoq.ports.jobs import ListJobsParams
from chronoq.services.api.app import create_app
from chronoq.services.api.deps import ApiDeps
from chronoq.services.api.ingest import Ingest
from chronoq.services.writer import Writer, into_store

BODY = {"project_id": "race", "payload": "P" * 2000, "cron_schedule": "0 3 * * *"}


class BlindKeys:
    """The store, except that its next ``blind`` answers of ``job_by_idempotency_key`` are
    None; the first ``together`` of them are given only once all of them have asked (so
    every one of those submissions has passed its check before any insert)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.blind = 0
        self.together = 0
        self.lookups = 0
        self._asked = asyncio.Event()

    async def job_by_idempotency_key(self, user_id: str, key: str) -> Job | None:
        self.lookups += 1
        if self.blind <= 0:
            return await self._store.job_by_idempotency_key(user_id, key)
        self.blind -= 1
        if self.together > 0:
            if self.lookups >= self.together:
                self._asked.set()
            await asyncio.wait_for(self._asked.wait(), 10)
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, BlindKeys]]:
    clock = SystemClock()
    store = SqliteStore(tmp_path / "chronoq.db")
    await store.start()
    blob = FsBlobStore(tmp_path / "blobs")
    await blob.start()
    writer = Writer(into_store(store), MemoryNotifier(), clock)
    await writer.start()
    blind = BlindKeys(store)
    metrics = Metrics()
    deps = ApiDeps(
        store=blind,
        ingest=Ingest(writer, blob, clock, metrics, 16),
        notifier=MemoryNotifier(),
        clock=clock,
        metrics=metrics,
        max_body_bytes=1 << 20,
        shell_enabled=False,
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1", headers={"X-User-ID": "alice"}
    ) as client:
        yield client, blind
    await writer.stop()
    await store.close()


async def _jobs(blind: BlindKeys) -> list[Job]:
    page = await blind.list_jobs(ListJobsParams(user_id="alice", limit=1000))
    return list(page.items)


async def test_racing_duplicates_collapse_onto_one_job(
    world: tuple[httpx.AsyncClient, BlindKeys],
) -> None:
    client, blind = world
    blind.blind = blind.together = 12
    headers = {"Idempotency-Key": "race-1"}
    answers = await asyncio.gather(
        *(client.post("/v1/jobs", json=BODY, headers=headers) for _ in range(12))
    )
    failed = [r.text for r in answers if r.status_code not in (200, 201)]
    assert not failed, failed
    ids = {r.json()["job_id"] for r in answers}
    stored = await _jobs(blind)
    assert len(stored) == 1 and ids == {stored[0].job_id}
    assert [r.status_code for r in answers].count(201) >= 1
    assert blind.lookups > 12  # all were told nothing first; the losers asked again
    # a late duplicate, blind: its insert is refused, it answers the original
    blind.blind, blind.together = 1, 0
    late = await client.post("/v1/jobs", json=BODY, headers=headers)
    assert late.status_code == 200 and late.json()["job_id"] == stored[0].job_id
    assert late.json()["payload"] == BODY["payload"]


async def test_racing_other_body_is_409_not_a_second_job(
    world: tuple[httpx.AsyncClient, BlindKeys],
) -> None:
    client, blind = world
    blind.blind = 2
    headers = {"Idempotency-Key": "race-2"}
    first = await client.post("/v1/jobs", json=BODY, headers=headers)
    assert first.status_code == 201, first.text
    other = await client.post("/v1/jobs", json={**BODY, "payload": "else"}, headers=headers)
    assert other.status_code == 409, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(await _jobs(blind)) == 1


async def test_racing_batch_keeps_the_other_items(
    world: tuple[httpx.AsyncClient, BlindKeys],
) -> None:
    """A batch whose keyed item lost the race still stores its other items once."""
    client, blind = world
    blind.blind = 2
    keyed = {**BODY, "idempotency_key": "race-3"}
    assert (await client.post("/v1/jobs", json=keyed)).status_code == 201
    batch = {"jobs": [{**BODY, "payload": "plain"}, keyed]}
    r = await client.post("/v1/jobs:batch", json=batch)
    assert r.status_code == 201, r.text
    items = r.json()["items"]
    stored = {job.job_id: job for job in await _jobs(blind)}
    assert len(stored) == 2 and {item["job_id"] for item in items} == set(stored)
    assert blind.blind == 0
    replay = await client.post("/v1/jobs:batch", json={"jobs": [keyed]})
    assert replay.status_code == 200 and replay.json()["items"][0]["job_id"] == items[1]["job_id"]


async def test_a_forgotten_key_makes_a_new_job(world: tuple[httpx.AsyncClient, BlindKeys]) -> None:
    """After retention forgot a key, the same key and body make a new job (the derived id
    is the old job's: the api must not keep answering 503 for it)."""
    client, blind = world
    headers = {"Idempotency-Key": "forgotten"}
    first = await client.post("/v1/jobs", json=BODY, headers=headers)
    assert first.status_code == 201, first.text
    assert await blind.forget_idempotency_keys(datetime.now(UTC) + timedelta(seconds=1)) == 1
    again = await client.post("/v1/jobs", json=BODY, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["job_id"] != first.json()["job_id"]
    replay = await client.post("/v1/jobs", json=BODY, headers=headers)
    assert replay.status_code == 200 and replay.json()["job_id"] == again.json()["job_id"]
    assert len(await _jobs(blind)) == 2
