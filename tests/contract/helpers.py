"""Builders shared by the contract tests. Time is explicit: every call passes its ``now``
(an instant built with ``at``), never the wall clock."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from chronoq.adapters.memory import MemoryCoordination, MemoryNotifier
from chronoq.domain.clock import SystemClock
from chronoq.domain.jobs import ClaimedRun, Fire, Job, Run, RunOutcome
from chronoq.domain.policies import Policies
from chronoq.domain.retry import DEFAULT_MAX_INTERRUPTIONS, RetryPolicy
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.observability.metrics import Metrics
from chronoq.ports.blob import BlobStore
from chronoq.ports.dispatch import ClaimDueParams, ClaimRunsParams, ReapParams, ReleaseParams
from chronoq.ports.jobs import ListFiresParams
from chronoq.ports.store import Store
from chronoq.services.coordinator import Coordinator, CoordinatorConfig

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def make_job(
    *,
    user_id: str = "alice",
    project_id: str = "default",
    payload: str | None = "echo hi",
    payload_ref: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    next_fire_at: datetime | None = T0,
    shard_id: int = 0,
    status: JobStatus = JobStatus.PENDING,
    max_retries: int = 0,
    timeout_seconds: float | None = None,
    created_at: datetime = T0,
) -> Job:
    return Job(
        job_id=str(uuid.uuid4()),
        user_id=user_id,
        project_id=project_id,
        payload=payload,
        payload_ref=payload_ref,
        payload_size=len((payload or "x" * 2000).encode()),
        cron_schedule=cron,
        timezone=timezone,
        next_fire_at=next_fire_at,
        shard_id=shard_id,
        status=status,
        max_retries=max_retries,
        timeout_seconds=timeout_seconds,
        created_at=created_at,
        updated_at=created_at,
    )


async def claim_due(
    store: Store,
    now: datetime,
    *,
    horizon: datetime | None = None,
    limit: int = 1000,
    shards: list[int] | None = None,
    owner: str | None = None,
    epoch: int | None = None,
) -> list[Run]:
    return await store.claim_due(
        ClaimDueParams(
            shards=shards, now=now, horizon=horizon or now, limit=limit, owner=owner, epoch=epoch
        )
    )


async def claim_runs(
    store: Store,
    worker_id: str,
    now: datetime,
    *,
    horizon: datetime | None = None,
    lease_until: datetime | None = None,
    limit: int = 100,
) -> list[ClaimedRun]:
    return await store.claim_runs(
        ClaimRunsParams(
            worker_id=worker_id,
            now=now,
            horizon=horizon or now,
            lease_until=lease_until or now + LEASE,
            limit=limit,
        )
    )


async def submit_and_lease(
    store: Store, job: Job, worker_id: str = "w1", now: datetime = T0, *, started: bool = False
) -> ClaimedRun:
    """Insert ``job``, fire it at ``now`` and lease its run to ``worker_id`` (lease until
    ``now + LEASE``); with ``started``, also ``mark_started`` it at ``now``."""
    await store.insert_jobs([job])
    assert len(await claim_due(store, now)) == 1
    (claimed,) = await claim_runs(store, worker_id, now)
    if started:
        assert await store.mark_started(worker_id, [claimed.run_id], now) == [claimed.run_id]
    return claimed


async def lease_and_start(
    store: Store, worker_id: str, now: datetime, *, limit: int = 100
) -> list[ClaimedRun]:
    """Claim the runs available at ``now`` for ``worker_id`` and mark them all started."""
    claimed = await claim_runs(store, worker_id, now, limit=limit)
    ids = [c.run_id for c in claimed]
    assert await store.mark_started(worker_id, ids, now) == ids
    return claimed


async def reap(
    store: Store,
    now: datetime,
    *,
    retry_at: datetime | None = None,
    max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS,
    live_workers: frozenset[str] | None = None,
    expire_all: bool = False,
    limit: int = 1000,
) -> int:
    """``reap_lost`` at ``now``; an interrupted run's next attempt at ``retry_at`` (or now)."""
    return await store.reap_lost(
        ReapParams(
            now=now,
            retry_at=retry_at or now,
            max_interruptions=max_interruptions,
            live_workers=live_workers,
            expire_all=expire_all,
            limit=limit,
        )
    )


async def release(
    store: Store,
    worker_id: str,
    run_ids: list[str],
    now: datetime,
    *,
    max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS,
) -> int:
    return await store.release_runs(
        ReleaseParams(
            worker_id=worker_id, run_ids=run_ids, now=now, max_interruptions=max_interruptions
        )
    )


def outcome(
    claimed: ClaimedRun,
    status: RunStatus,
    *,
    worker_id: str = "w1",
    attempt: int | None = None,
    started_at: datetime = T0,
    completed_at: datetime | None = None,
    retry_at: datetime | None = None,
    output: str = "out",
    exit_code: int | None = 0,
    error_message: str | None = None,
) -> RunOutcome:
    return RunOutcome(
        run_id=claimed.run_id,
        worker_id=worker_id,
        attempt=claimed.attempt if attempt is None else attempt,
        status=status,
        started_at=started_at,
        completed_at=completed_at or started_at + timedelta(seconds=1),
        output=output,
        exit_code=exit_code,
        error_message=error_message,
        retry_at=retry_at,
    )


async def runs_of(store: Store, job: Job) -> list[Run]:
    """The job's runs, oldest attempt first."""
    return sorted(
        await store.list_runs(job.user_id, job.job_id), key=lambda r: (r.scheduled_for, r.attempt)
    )


async def run_by_id(store: Store, job: Job, run_id: str) -> Run:
    (run,) = [r for r in await store.list_runs(job.user_id, job.job_id) if r.run_id == run_id]
    return run


async def output_of(store: Store, job: Job, run_id: str) -> str | None:
    """A run's whole output (lists carry only its start)."""
    return await store.read_output(job.user_id, job.job_id, run_id, 0, 10**9)


async def job_now(store: Store, job: Job) -> Job:
    found = await store.get_job(job.user_id, job.job_id)
    assert found is not None
    return found


def retention_coordinator(store: Store, blob: BlobStore) -> Coordinator:
    """A leader that purges every 50 ms what finished over an hour ago, with its blobs, and
    sweeps orphaned objects of any age (real clock; start and stop it around the test)."""
    config = CoordinatorConfig(
        node_id="n1", lease_seconds=30, retry=RetryPolicy(), recover_orphans=False,
        retention_hours=1, purge_every=0.05, orphan_age=0,
    )  # fmt: skip
    return Coordinator(
        store, store, blob, MemoryNotifier(), MemoryCoordination(), SystemClock(), Metrics(),
        config,
    )  # fmt: skip


# -- schedule policies, job control and the fire ledger (issue 9) -----------------------------


def policy_job(
    policies: Policies | None = None,
    *,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    **fields: Any,
) -> Job:
    """``make_job(**fields)`` with these policies and idempotency key."""
    return replace(
        make_job(**fields),
        policies=policies or Policies(),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )


async def fires_of(
    store: Store,
    job: Job,
    start: datetime = T0 - timedelta(days=1),
    end: datetime = T0 + timedelta(days=30),
    *,
    limit: int = 10_000,
) -> list[Fire]:
    """The job's fire ledger in ``[start, end]`` (by default: everything near ``T0``)."""
    fires = await store.list_fires(
        ListFiresParams(user_id=job.user_id, job_id=job.job_id, start=start, end=end, limit=limit)
    )
    assert fires is not None
    return fires


async def complete(
    store: Store, claimed: ClaimedRun, worker_id: str, when: datetime, **kwargs: Any
) -> None:
    """Report ``claimed`` COMPLETED by ``worker_id`` at ``when`` (started a second earlier)."""
    done = outcome(
        claimed,
        RunStatus.COMPLETED,
        worker_id=worker_id,
        started_at=when - timedelta(seconds=1),
        completed_at=when,
        **kwargs,
    )
    assert await store.complete_runs([done]) == [True]
