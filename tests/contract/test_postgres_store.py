"""PostgreSQL only: many pickers and workers at once, lock ordering, races between the
reaper and workers, text the server refuses, unreachable servers.

Fencing races (claims against ``fence_shards``) are in ``test_postgres_fencing``.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from chronoq.adapters.postgres import PostgresStore
from chronoq.domain.jobs import ClaimedRun, Run, RunOutcome
from chronoq.domain.states import LOST_TO_MEMBERSHIP, RUN_TERMINAL, RunStatus
from chronoq.errors import UnavailableError, ValidationError
from chronoq.ports.dispatch import ReleaseParams

from .conftest import ADMIN_DSN, CONNECT_TIMEOUT
from .helpers import T0, at, claim_due, claim_runs, make_job, outcome, reap, runs_of

DEADLINE = 10.0
"""Seconds within which anything that must not hang has to come back."""


@pytest.fixture
async def two_stores(pg_database: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores (two pools: two processes, as far as the database can tell)."""
    stores = (
        PostgresStore(pg_database, min_size=2, max_size=4),
        PostgresStore(pg_database, min_size=2, max_size=4),
    )
    await asyncio.gather(*(s.start() for s in stores))
    try:
        yield stores
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def until_empty(step: Callable[[], Awaitable[list[Any]]]) -> list[Any]:
    """Call ``step`` until it returns nothing twice in a row (others may hold rows briefly)."""
    taken: list[Any] = []
    empty = 0
    while empty < 2:
        got = await step()
        taken.extend(got)
        empty = 0 if got else empty + 1
        await asyncio.sleep(0)
    return taken


async def test_concurrent_pickers_and_workers_never_double_claim(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two_stores
    one_shot = [make_job(next_fire_at=at(-i / 1000)) for i in range(300)]
    recurring = [make_job(cron="@every 1s", next_fire_at=T0) for _ in range(100)]
    await a.insert_jobs(one_shot + recurring)

    async def picker(store: PostgresStore) -> list[Run]:
        return await until_empty(lambda: claim_due(store, T0, limit=7))

    picked = await asyncio.gather(*(picker(s) for s in (a, b, a, b)))
    runs = [r for batch in picked for r in batch]
    fires = Counter((r.job_id, r.scheduled_for) for r in runs)
    assert len(runs) == 400
    assert max(fires.values()) == 1
    assert all(len(batch) > 0 for batch in picked[:2]), "both stores should have claimed"
    for job in recurring[:10]:
        found = await b.get_job(job.user_id, job.job_id)
        assert found is not None and found.next_fire_at == at(1)

    async def worker(store: PostgresStore, worker_id: str) -> list[ClaimedRun]:
        return await until_empty(lambda: claim_runs(store, worker_id, T0, limit=5))

    names = ["w1", "w2", "w3", "w4"]
    leased = await asyncio.gather(*(worker(s, n) for s, n in zip((a, b, a, b), names, strict=True)))
    ids = Counter(c.run_id for batch in leased for c in batch)
    assert len(ids) == 400
    assert max(ids.values()) == 1
    for name, batch in zip(names, leased, strict=True):
        for claimed in batch[:5]:
            (run,) = [
                r for r in await a.list_runs("alice", claimed.job_id) if r.run_id == claimed.run_id
            ]
            assert (run.status, run.worker_id, run.started_at) == (RunStatus.RUNNING, name, None)


async def test_mixed_concurrent_writers_do_not_deadlock(
    pg_database: str, two_stores: tuple[PostgresStore, PostgresStore]
) -> None:
    """Every writer that waits for rows, at once, on overlapping rows in clashing orders:
    the locking order of ``sql`` must leave PostgreSQL no deadlock to detect."""
    a, b = two_stores
    jobs = [make_job(max_retries=1, next_fire_at=at(-i / 1000)) for i in range(60)]
    await a.insert_jobs(jobs)
    await claim_due(a, T0)
    claimed = await claim_runs(a, "w1", T0, limit=100)
    assert len(claimed) == 60
    ids = [c.run_id for c in claimed]

    async def heartbeats() -> None:
        for i in range(20):
            await b.extend_leases("w1", ids[::-1] if i % 2 else ids, at(60 + i))

    async def starts() -> None:
        for chunk in range(0, 60, 6):
            await a.mark_started("w1", ids[chunk : chunk + 12][::-1], at(1))

    async def completions() -> None:
        for chunk in range(0, 40, 5):
            batch = claimed[chunk : chunk + 5][::-1]
            await a.complete_runs(
                [outcome(c, RunStatus.RETRY_SCHEDULED, retry_at=at(5)) for c in batch]
            )

    async def cancels() -> None:
        for job in jobs[::3]:
            await b.cancel_job(job.user_id, job.job_id, at(2))

    async def handbacks() -> None:
        await a.release_runs(ReleaseParams(worker_id="w1", run_ids=ids[40:50][::-1], now=at(3)))
        await reap(b, at(1000), live_workers=frozenset({"w2"}), limit=5)

    await asyncio.gather(heartbeats(), starts(), completions(), cancels(), handbacks())

    for job in jobs:
        runs = await a.list_runs(job.user_id, job.job_id)
        assert sum(r.status in RUN_TERMINAL for r in runs) <= 1
    await asyncio.gather(a.close(), b.close())  # flush the backends' statistics
    conn = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        deadlocks = await conn.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert deadlocks == 0


async def test_reap_lost_racing_complete_runs_exactly_one_wins(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """A worker reports outcomes while the leader declares it dead: for every run exactly
    one side applies. Either the outcome (COMPLETED, no further attempt) or the lost-run
    rule (INTERRUPTED, attempt 2 queued), never both and never neither."""
    worker, leader = two_stores
    jobs = [make_job(next_fire_at=at(-i / 1000)) for i in range(120)]
    await worker.insert_jobs(jobs)
    await claim_due(worker, T0)
    claimed = await claim_runs(worker, "w1", T0, limit=200)
    assert len(claimed) == 120
    assert len(await worker.mark_started("w1", [c.run_id for c in claimed], T0)) == 120

    async def complete() -> dict[str, bool]:
        applied: dict[str, bool] = {}
        for chunk in range(0, 120, 8):
            batch = claimed[chunk : chunk + 8]
            results = await worker.complete_runs([outcome(c, RunStatus.COMPLETED) for c in batch])
            applied.update(zip((c.run_id for c in batch), results, strict=True))
        return applied

    async def reaper() -> int:
        total = 0
        while (count := await reap(leader, at(1), live_workers=frozenset(), limit=5)) > 0:
            total += count
        return total

    applied, reaped = await asyncio.gather(complete(), reaper())

    by_job = {c.job_id: c for c in claimed}
    for job in jobs:
        runs = await runs_of(worker, job)
        first = runs[0]
        if applied[by_job[job.job_id].run_id]:
            assert [(r.attempt, r.status) for r in runs] == [(1, RunStatus.COMPLETED)]
        else:
            assert [(r.attempt, r.status) for r in runs] == [
                (1, RunStatus.INTERRUPTED),
                (2, RunStatus.QUEUED),
            ]
            assert first.error_message == LOST_TO_MEMBERSHIP
            assert runs[1].interruptions == 1
    assert sum(applied.values()) + reaped == 120


@pytest.mark.parametrize(
    ("field", "text"),
    [("output", "a\x00b"), ("error_message", "boom\x00"), ("output", "bad \udc80 byte")],
    ids=["nul-output", "nul-error", "lone-surrogate"],
)
async def test_text_postgresql_refuses_is_a_validation_error_not_a_hang(
    pg_database: str, field: str, text: str
) -> None:
    """Outcomes reach the store cleaned (``RunOutcome``); one that bypassed the cleaning
    must still come out as ValidationError, apply nothing of its batch, and leave the
    store working: the same runs then complete with clean text."""
    store = PostgresStore(pg_database, min_size=1, max_size=1)  # one connection: must recover
    await store.start()
    try:
        jobs = [make_job(next_fire_at=at(-i)) for i in range(2)]
        await store.insert_jobs(jobs)
        await claim_due(store, T0)
        good, bad = sorted(await claim_runs(store, "w1", T0), key=lambda c: c.job_id)
        raw = outcome(bad, RunStatus.FAILED, error_message="x")
        object.__setattr__(raw, field, text)  # past RunOutcome's cleaning
        assert getattr(raw, field) == text

        with pytest.raises(ValidationError):
            await asyncio.wait_for(
                store.complete_runs([outcome(good, RunStatus.COMPLETED), raw]), DEADLINE
            )

        for job in jobs:
            (run,) = await runs_of(store, job)
            assert run.status is RunStatus.RUNNING  # all or nothing
        clean = RunOutcome(**{f: getattr(raw, f) for f in RunOutcome.__dataclass_fields__})
        done = [outcome(good, RunStatus.COMPLETED), clean]
        assert await asyncio.wait_for(store.complete_runs(done), DEADLINE) == [True, True]
        (run,) = await runs_of(store, jobs[[j.job_id for j in jobs].index(bad.job_id)])
        assert getattr(run, field) == getattr(clean, field) != text
    finally:
        await store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_server_is_unavailable() -> None:
    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{_free_port()}/chronoq", connect_timeout=2
    )
    with pytest.raises(UnavailableError):
        await store.start()
    with pytest.raises(UnavailableError):
        await store.get_job("alice", make_job().job_id)
    await store.close()


async def test_lost_connections_surface_as_unavailable_then_recover(pg_database: str) -> None:
    store = PostgresStore(pg_database, min_size=2, max_size=2)
    await store.start()
    job = make_job()
    await store.insert_jobs([job])
    admin = await asyncpg.connect(ADMIN_DSN, timeout=CONNECT_TIMEOUT)
    try:
        database = pg_database.rsplit("/", 1)[1]
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        outcomes: list[str] = []
        for _ in range(6):
            try:
                found = await store.get_job(job.user_id, job.job_id)
            except UnavailableError:
                outcomes.append("unavailable")
            else:
                assert found == job
                outcomes.append("ok")
        assert outcomes[-1] == "ok"
    finally:
        await admin.close()
        await store.close()
