"""Store contract: jobs — insert, get, list (user scoping, filters, cursors), cancel, lifecycle."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from chronoq.domain.jobs import Job
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.errors import ConflictError, UnavailableError, ValidationError
from chronoq.ports.jobs import ListJobsParams
from chronoq.ports.store import Store

from .conftest import Harness
from .helpers import (
    T0,
    at,
    claim_due,
    claim_runs,
    job_now,
    make_job,
    outcome,
    reap,
    run_by_id,
    runs_of,
    submit_and_lease,
)


async def test_insert_then_get_round_trips_every_field(store: Store) -> None:
    jobs = [
        make_job(
            cron="*/2 * * * * *",
            timezone="Europe/Paris",
            next_fire_at=T0 + timedelta(microseconds=123_456),
            shard_id=17,
            max_retries=3,
            timeout_seconds=2.5,
            project_id="proj",
        ),
        make_job(payload=None, payload_ref="blob:payloads/x", next_fire_at=None),
    ]
    await store.insert_jobs(jobs)
    for job in jobs:
        assert await store.get_job(job.user_id, job.job_id) == job


async def test_get_is_scoped_to_the_owner(store: Store) -> None:
    job = make_job(user_id="alice")
    await store.insert_jobs([job])
    assert await store.get_job("bob", job.job_id) is None
    assert await store.get_job("alice", make_job().job_id) is None
    assert await store.get_job("alice", "not-a-job-id") is None
    assert await store.list_runs("bob", job.job_id) == []


async def test_insert_is_all_or_nothing(store: Store) -> None:
    first = make_job()
    await store.insert_jobs([first])
    fresh = make_job()
    with pytest.raises(Exception):  # noqa: B017 - each engine names its integrity error
        await store.insert_jobs([fresh, dataclasses.replace(first, project_id="dup")])
    assert await store.get_job(fresh.user_id, fresh.job_id) is None
    assert await store.get_job(first.user_id, first.job_id) == first
    await store.insert_jobs([])


async def test_a_duplicate_job_id_is_a_conflict(store: Store) -> None:
    first = make_job()
    await store.insert_jobs([first])
    with pytest.raises(ConflictError):
        await store.insert_jobs([dataclasses.replace(first, payload="other")])
    assert await store.get_job(first.user_id, first.job_id) == first


async def test_insert_if_absent_skips_existing_ids_and_inserts_the_rest(store: Store) -> None:
    first = make_job()
    await store.insert_jobs([first])
    changed = dataclasses.replace(first, payload="not me", updated_at=at(9))
    fresh = make_job(user_id="bob")

    await store.insert_jobs([changed, fresh], if_absent=True)
    await store.insert_jobs([fresh, changed], if_absent=True)  # a redelivery: changes nothing

    assert await store.get_job(first.user_id, first.job_id) == first
    assert await store.get_job(fresh.user_id, fresh.job_id) == fresh
    assert [j.job_id for j in (await store.list_jobs(ListJobsParams(user_id="bob"))).items] == [
        fresh.job_id
    ]
    assert len(await claim_due(store, T0)) == 2  # each job fires once: no hidden duplicate


async def test_list_pages_oldest_first_with_an_opaque_cursor(store: Store) -> None:
    mine = [make_job(user_id="alice", created_at=at(i)) for i in range(5)]
    theirs = [make_job(user_id="bob") for _ in range(2)]
    await store.insert_jobs(mine[:2] + theirs[:1])
    await store.insert_jobs(mine[2:] + theirs[1:])

    seen: list[Job] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.list_jobs(ListJobsParams(user_id="alice", cursor=cursor, limit=2))
        seen.extend(page.items)
        pages += 1
        assert len(page.items) <= 2
        if page.next_cursor is None:
            break
        assert isinstance(page.next_cursor, str)
        cursor = page.next_cursor
    assert [j.job_id for j in seen] == [j.job_id for j in mine]
    assert pages == 3

    exact = await store.list_jobs(ListJobsParams(user_id="bob", limit=2))
    assert [j.job_id for j in exact.items] == [j.job_id for j in theirs]
    assert exact.next_cursor is None
    assert (await store.list_jobs(ListJobsParams(user_id="carol"))).items == []


async def test_list_filters_by_status_and_project(store: Store) -> None:
    a = make_job(project_id="p1")
    b = make_job(project_id="p2", status=JobStatus.COMPLETED, next_fire_at=None)
    c = make_job(project_id="p1", status=JobStatus.COMPLETED, next_fire_at=None)
    await store.insert_jobs([a, b, c])

    async def ids(**filters: object) -> list[str]:
        page = await store.list_jobs(ListJobsParams(user_id="alice", **filters))  # type: ignore[arg-type]
        return [j.job_id for j in page.items]

    assert await ids(statuses=frozenset({JobStatus.COMPLETED})) == [b.job_id, c.job_id]
    assert await ids(project_id="p1") == [a.job_id, c.job_id]
    assert await ids(project_id="p1", statuses=frozenset({JobStatus.PENDING})) == [a.job_id]
    assert await ids(statuses=frozenset({JobStatus.CANCELLED})) == []

    first = await store.list_jobs(
        ListJobsParams(user_id="alice", statuses=frozenset({JobStatus.COMPLETED}), limit=1)
    )
    rest = await store.list_jobs(
        ListJobsParams(
            user_id="alice", statuses=frozenset({JobStatus.COMPLETED}), cursor=first.next_cursor
        )
    )
    assert [j.job_id for j in first.items + rest.items] == [b.job_id, c.job_id]


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "9" * 19, ""])
async def test_list_rejects_a_bad_cursor(store: Store, cursor: str) -> None:
    with pytest.raises(ValidationError):
        await store.list_jobs(ListJobsParams(user_id="alice", cursor=cursor))


async def test_list_rejects_a_non_ascii_digit_cursor(harness: Harness) -> None:
    with pytest.raises(ValidationError):
        await harness.store.list_jobs(ListJobsParams(user_id="alice", cursor="²"))


# -- cancel -----------------------------------------------------------------------------------


async def test_cancel_stops_fires_cancels_queued_and_reports_running(store: Store) -> None:
    job = make_job(cron="@every 2s")
    leased = await submit_and_lease(store, job, "w1", T0)
    (queued,) = await claim_due(store, at(2))

    result = await store.cancel_job("alice", job.job_id, at(3))

    assert result is not None
    assert result.running_run_ids == [leased.run_id]
    assert result.job.status is JobStatus.CANCELLED
    assert result.job.next_fire_at is None
    assert result.job.updated_at == at(3)
    assert await job_now(store, job) == result.job
    dropped = await run_by_id(store, job, queued.run_id)
    assert dropped.status is RunStatus.CANCELLED
    assert dropped.completed_at == at(3)
    assert (await run_by_id(store, job, leased.run_id)).status is RunStatus.RUNNING
    assert await claim_due(store, at(100)) == []
    assert await store.next_due_at(None) is None
    assert await claim_runs(store, "w2", at(100)) == []


async def test_a_cancelled_jobs_running_run_ends_cancelled_not_retried(store: Store) -> None:
    job = make_job(max_retries=5)
    leased = await submit_and_lease(store, job)
    await store.cancel_job("alice", job.job_id, at(1))

    done = outcome(leased, RunStatus.RETRY_SCHEDULED, completed_at=at(2), retry_at=at(3))
    assert await store.complete_runs([done]) == [True]

    (only,) = await runs_of(store, job)
    assert only.status is RunStatus.CANCELLED
    assert (await job_now(store, job)).status is JobStatus.CANCELLED


async def test_reaping_a_cancelled_jobs_run_ends_it_cancelled(store: Store) -> None:
    job = make_job(max_retries=5)
    await submit_and_lease(store, job)
    await store.cancel_job("alice", job.job_id, at(1))
    assert await reap(store, at(100), retry_at=at(101)) == 1
    (only,) = await runs_of(store, job)
    assert only.status is RunStatus.CANCELLED
    assert only.error_message == "cancelled by the user"
    assert only.completed_at == at(100)
    assert (await job_now(store, job)).status is JobStatus.CANCELLED


async def test_cancel_leaves_a_finished_job_unchanged(store: Store) -> None:
    done = make_job(status=JobStatus.COMPLETED, next_fire_at=None)
    live = make_job()
    await store.insert_jobs([done, live])

    result = await store.cancel_job("alice", done.job_id, at(5))
    assert result is not None
    assert result.job == done
    assert result.running_run_ids == []

    first = await store.cancel_job("alice", live.job_id, at(5))
    again = await store.cancel_job("alice", live.job_id, at(9))
    assert first is not None and again is not None
    assert again.job == first.job
    assert again.running_run_ids == []


async def test_cancel_of_another_users_job_is_not_found(store: Store) -> None:
    job = make_job(user_id="alice")
    await store.insert_jobs([job])
    assert await store.cancel_job("bob", job.job_id, at(1)) is None
    assert await store.cancel_job("alice", make_job().job_id, at(1)) is None
    assert await store.cancel_job("alice", "nope", at(1)) is None
    assert await job_now(store, job) == job


# -- lifecycle and inputs ---------------------------------------------------------------------


async def test_naive_datetimes_are_refused(store: Store) -> None:
    naive = datetime(2026, 3, 1, 12, 0, 0)
    with pytest.raises(ValueError):
        await claim_due(store, naive)


async def test_a_closed_store_is_unavailable_and_closes_twice(harness: Harness) -> None:
    await harness.store.close()
    await harness.store.close()
    with pytest.raises(UnavailableError):
        await harness.store.get_job("alice", make_job().job_id)
