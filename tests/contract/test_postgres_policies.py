"""PostgreSQL only: the schedule policies under concurrency and the store's own fast paths
(issue 9). The rules themselves are the shared contract tests' (every store)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from chronoq.adapters.postgres import PostgresStore
from chronoq.domain.jobs import ClaimedRun, Job
from chronoq.domain.policies import Overlap, Policies
from chronoq.domain.states import RunStatus
from chronoq.ports.dispatch import OutboxParams

from .conftest import CONNECT_TIMEOUT
from .helpers import (
    LEASE,
    T0,
    at,
    claim_due,
    claim_runs,
    job_now,
    make_job,
    outcome,
    reap,
    runs_of,
)


def gated_job(overlap: Overlap, **kw: Any) -> Job:
    return dataclasses.replace(
        make_job(cron="@every 1s", next_fire_at=T0, **kw), policies=Policies(overlap=overlap)
    )


@pytest.fixture
async def stores(pg_database: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores (two pools: two processes, as far as the database can tell)."""
    pair = (
        PostgresStore(pg_database, min_size=2, max_size=6),
        PostgresStore(pg_database, min_size=2, max_size=6),
    )
    await asyncio.gather(*(s.start() for s in pair))
    try:
        yield pair
    finally:
        await asyncio.gather(*(s.close() for s in pair))


async def _fires(store: PostgresStore, seconds: int) -> list[ClaimedRun]:
    """Claim ``seconds`` fires of every job (one claim a second); second ``s``'s runs are
    leased to worker ``w{s}``."""
    claimed: list[ClaimedRun] = []
    for second in range(seconds):
        await claim_due(store, at(second))
        claimed += await claim_runs(store, f"w{second}", at(second), limit=1000)
    return claimed


async def test_concurrent_starts_of_one_gated_job_start_exactly_one(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """Five workers start five fires of one ``overlap: skip`` job at the same time: the
    job's lock serializes them, so one starts and the other four end SKIPPED."""
    a, b = stores
    job = gated_job(Overlap.SKIP)
    await a.insert_jobs([job])
    claimed: list[ClaimedRun] = []
    for second in range(5):
        await claim_due(a, at(second))
        claimed += await claim_runs(a, f"w{second}", at(second))
    assert len(claimed) == 5

    started = await asyncio.gather(
        *(
            (a if i % 2 else b).mark_started(f"w{i}", [c.run_id], at(5))
            for i, c in enumerate(claimed)
        )
    )

    assert sum(len(s) for s in started) == 1
    statuses = sorted(r.status for r in await runs_of(a, job))
    assert statuses == [RunStatus.RUNNING] + [RunStatus.SKIPPED] * 4


async def test_plain_runs_start_in_one_statement_without_a_transaction(
    stores: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path: runs of one-shot jobs and ``overlap: allow`` jobs without a start
    deadline start in the one statement they always did; only gated runs open a
    transaction (their jobs are locked and ``plan_start`` decides)."""
    store, _ = stores
    plain = [make_job(next_fire_at=T0) for _ in range(5)]
    plain.append(gated_job(Overlap.ALLOW))
    gated = gated_job(Overlap.SKIP)
    await store.insert_jobs([*plain, gated])
    await claim_due(store, T0)
    claimed = await claim_runs(store, "w1", T0, limit=100)
    gated_run = next(c.run_id for c in claimed if c.job_id == gated.job_id)
    plain_runs = [c.run_id for c in claimed if c.run_id != gated_run]
    transactions: list[str] = []
    real = store._transaction

    async def counting(what: str, body: Any) -> Any:
        transactions.append(what)
        return await real(what, body)

    monkeypatch.setattr(store, "_transaction", counting)

    assert await store.mark_started("w1", plain_runs, T0) == plain_runs
    assert transactions == []
    assert await store.mark_started("w1", [gated_run], T0) == [gated_run]
    assert transactions == ["mark_started"]


async def test_a_buffered_run_is_unpublished_and_released_when_the_running_one_ends(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """With an external run queue the run table is the outbox (005): a run buffered at its
    start re-enters QUEUED, so its spent message is forgotten (the trigger clears
    ``published_at``); released early (the running run ended), it is unpublished again
    and available at once."""
    store, _ = stores
    job = gated_job(Overlap.BUFFER_ONE)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    (first,) = await claim_runs(store, "w1", T0)
    assert await store.mark_started("w1", [first.run_id], T0) == [first.run_id]
    await claim_due(store, at(1))
    assert await store.mark_published(await _unpublished(store, at(1)), at(1)) == 1
    (second,) = await claim_runs(store, "w2", at(1))
    assert await store.mark_started("w2", [second.run_id], at(1)) == []
    assert await _unpublished(store, at(1)) == []  # not available before the lease ends
    assert await _unpublished(store, T0 + LEASE) == [second.run_id]
    assert await store.mark_published([second.run_id], at(2)) == 1

    done = outcome(first, RunStatus.COMPLETED, completed_at=at(3))
    assert await store.complete_runs([done]) == [True]

    assert await _unpublished(store, at(3)) == [second.run_id]
    runs = {r.run_id: r for r in await runs_of(store, job)}
    assert (runs[second.run_id].status, runs[second.run_id].available_at) == (
        RunStatus.QUEUED,
        at(3),
    )


async def _unpublished(store: PostgresStore, horizon: Any) -> list[str]:
    due = await store.unpublished_runs(
        OutboxParams(horizon=horizon, settled_before=horizon + timedelta(hours=1))
    )
    return [run_id for run_id, _queue in due]


async def test_mixed_writers_on_gated_jobs_do_not_deadlock(
    pg_database: str, stores: tuple[PostgresStore, PostgresStore]
) -> None:
    """Gated starts (jobs, then runs with the jobs' running and buffered runs), outcomes
    that release buffered runs, pauses that skip queued runs, cancels, triggers,
    heartbeats and the reaper, at once on the same jobs: PostgreSQL detects no deadlock,
    and no gated job ever has two started runs going."""
    a, b = stores
    overlaps = [Overlap.SKIP, Overlap.BUFFER_ONE, Overlap.CANCEL_PREVIOUS]
    jobs = [gated_job(overlaps[i % 3]) for i in range(12)]
    await a.insert_jobs(jobs)
    claimed = await _fires(a, 4)
    assert len(claimed) == 48
    workers = {f"w{s}": [c for i, c in enumerate(claimed) if i // 12 == s] for s in range(4)}

    async def starts(worker: str, runs: list[ClaimedRun]) -> None:
        ids = [c.run_id for c in runs]
        for chunk in range(0, len(ids), 4):
            await (a if chunk % 8 else b).mark_started(worker, ids[chunk : chunk + 4][::-1], at(5))

    async def completions() -> None:
        for c in workers["w0"]:
            await b.complete_runs([outcome(c, RunStatus.COMPLETED, worker_id="w0")])

    async def heartbeats() -> None:
        ids = [c.run_id for c in workers["w1"]]
        for i in range(10):
            await a.extend_leases("w1", ids[::-1] if i % 2 else ids, at(60 + i))

    async def reaper() -> None:
        await reap(b, at(1000), live_workers=frozenset({"w0", "w1", "w2"}), limit=5)

    await asyncio.gather(
        *(starts(w, runs) for w, runs in workers.items()),
        completions(),
        _control(a, b, jobs),
        heartbeats(),
        reaper(),
    )

    skipped = started = 0
    for job in jobs:
        runs = await runs_of(a, job)
        skipped += sum(r.status is RunStatus.SKIPPED for r in runs)
        started += sum(r.started_at is not None for r in runs)
        going = [r for r in runs if r.status is RunStatus.RUNNING and r.started_at is not None]
        assert len(going) <= 1, (job.policies.overlap, runs)
    assert skipped > 0 and started > 0  # the gated paths ran
    await asyncio.gather(a.close(), b.close())  # flush the backends' statistics
    assert await _deadlocks(pg_database) == 0


async def _control(a: PostgresStore, b: PostgresStore, jobs: list[Job]) -> None:
    """Pauses, triggers and cancels of some of ``jobs``, each store in turn."""
    for job in jobs[::4]:
        await a.pause_job(job.user_id, job.job_id, at(6))
    for job in jobs[1::4]:
        await b.trigger_job(job.user_id, job.job_id, at(6))
    for job in jobs[2::6]:
        await a.cancel_job(job.user_id, job.job_id, at(6))


async def _deadlocks(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    try:
        count: int = await conn.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return count


async def test_a_claim_keeps_a_fire_that_has_a_run_already(
    stores: tuple[PostgresStore, PostgresStore], pg_database: str
) -> None:
    """A manual run at an instant that became a nominal fire (written here behind the
    store's back, as a schedule change could leave it): the claim keeps that run, does
    not fail on the unique key, and moves the job on."""
    store, _ = stores
    job = make_job(cron="@every 10s", next_fire_at=at(10))
    other = make_job(next_fire_at=at(10))
    await store.insert_jobs([job, other])
    conn = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(
            "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
            " triggered_at, available_at, manual)"
            " VALUES (gen_random_uuid(), $1, $2, $3, 1, 'QUEUED', $3, $3, true)",
            job.job_id,
            job.user_id,
            at(10),
        )
    finally:
        await conn.close()

    claimed = await claim_due(store, at(10))

    assert [r.job_id for r in claimed] == [other.job_id]
    (manual,) = await runs_of(store, job)
    assert manual.manual
    assert (await job_now(store, job)).next_fire_at == at(20)
