"""Job list filters (status set, project, kind, queue, search) and the newest runs of each listed
job, on every store: each agrees with the reference rule ``ports.jobs.job_listed`` and with
``list_runs``, page by page through the cursor."""

from __future__ import annotations

import dataclasses
import itertools
import random
from datetime import timedelta

import pytest

from chronoq.domain.jobs import Job
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.ports.jobs import JobKind, ListJobsParams, RunBrief, job_listed
from chronoq.ports.store import Store

from .helpers import T0, at, claim_due, claim_runs, make_job, outcome

ALICE = "alice"


async def ids(store: Store, limit: int = 100, **filters: object) -> list[str]:
    """Every matching job id, following the cursor ``limit`` at a time."""
    found: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_jobs(
            ListJobsParams(user_id=ALICE, cursor=cursor, limit=limit, **filters)  # type: ignore[arg-type]
        )
        assert len(page.items) <= limit
        found.extend(j.job_id for j in page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def once(status: JobStatus = JobStatus.PENDING, project_id: str = "default") -> Job:
    terminal = status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
    return make_job(project_id=project_id, status=status, next_fire_at=None if terminal else T0)


def recurring(status: JobStatus = JobStatus.PENDING, project_id: str = "default") -> Job:
    return make_job(project_id=project_id, status=status, cron="* * * * *")


async def test_status_filter_takes_several_statuses(store: Store) -> None:
    jobs = [once(s) for s in JobStatus if s is not JobStatus.ACCEPTED]
    await store.insert_jobs(jobs)
    by_status = {j.status: j.job_id for j in jobs}

    both = frozenset({JobStatus.FAILED, JobStatus.COMPLETED})
    assert await ids(store, statuses=both) == [j.job_id for j in jobs if j.status in both]
    assert await ids(store, statuses=frozenset({JobStatus.PAUSED})) == [by_status[JobStatus.PAUSED]]
    assert await ids(store, statuses=frozenset()) == [j.job_id for j in jobs]  # empty: any


async def test_kind_separates_one_shot_and_recurring_jobs(store: Store) -> None:
    a, b, c = once(), recurring(), once(JobStatus.COMPLETED)
    await store.insert_jobs([a, b, c])
    assert await ids(store, kind=JobKind.ONCE) == [a.job_id, c.job_id]
    assert await ids(store, kind=JobKind.RECURRING) == [b.job_id]
    assert await ids(store, kind=JobKind.RECURRING, statuses=frozenset({JobStatus.COMPLETED})) == []


async def test_queue_filter_takes_one_queue_exactly(store: Store) -> None:
    a, b, c = once(), dataclasses.replace(recurring(), queue="reports"), once()
    c = dataclasses.replace(c, queue="reports.eu")
    await store.insert_jobs([a, b, c])
    assert await ids(store, queue="default") == [a.job_id]
    assert await ids(store, queue="reports") == [b.job_id]  # exact: not reports.eu
    assert await ids(store, queue="reports", kind=JobKind.ONCE) == []
    assert await ids(store, queue="nobody") == []


async def test_search_matches_an_id_prefix_or_a_project_substring(store: Store) -> None:
    target = once(project_id="billing")
    nightly = recurring(project_id="reports-nightly")
    plain = once(project_id="XYZ-export")
    theirs = make_job(user_id="bob", project_id="reports-nightly")
    await store.insert_jobs([target, nightly, plain, theirs])

    assert await ids(store, search=target.job_id) == [target.job_id]
    assert await ids(store, search=target.job_id[:9]) == [target.job_id]
    # Ids are lowercase: an upper-case id (pasted from elsewhere) still finds the job.
    assert await ids(store, search=target.job_id[:9].upper()) == [target.job_id]
    assert await ids(store, search="nightly") == [nightly.job_id]  # never bob's
    assert await ids(store, search="XYZ") == [plain.job_id]
    # Project ids are compared exactly: no case folding (x, y, z are no hex digits either).
    assert await ids(store, search="xyz") == []
    # A substring of an id is no prefix.
    assert await ids(store, search=target.job_id[3:12]) == []
    assert await ids(store, search="report", kind=JobKind.ONCE) == []
    assert await ids(store, search="report", kind=JobKind.RECURRING) == [nightly.job_id]
    assert await ids(store, search=target.job_id[:9] + "x") == []  # no id has that shape
    # A whole id finds that job alone, even in a project id holding it.
    holder = once(project_id=f"copy-of-{target.job_id}")
    await store.insert_jobs([holder])
    assert await ids(store, search=target.job_id) == [target.job_id]
    assert await ids(store, search=target.job_id[:-1]) == [target.job_id, holder.job_id]


@pytest.mark.parametrize("project", ["50%_off", "it's", "a\\b", "Ünïcødé ☃ 𝄞", "[x]*"])
async def test_search_takes_its_text_literally(store: Store, project: str) -> None:
    job = once(project_id=project)
    decoy = once(project_id="zzz")
    await store.insert_jobs([job, decoy])
    for part in {project, project[1:-1]}:
        assert await ids(store, search=part) == [job.job_id], part
    assert await ids(store, search="%") == ([job.job_id] if "%" in project else [])
    assert await ids(store, search="_") == ([job.job_id] if "_" in project else [])


async def test_filters_combine_with_the_cursor(store: Store) -> None:
    """Random jobs of two users, every combination of filters, paged 3 at a time: each
    store lists exactly what the reference rule passes, in insertion order."""
    rng = random.Random(7)
    statuses = [s for s in JobStatus if s is not JobStatus.ACCEPTED]
    projects = ["alpha", "beta", "alphabet", "Gamma"]
    jobs: list[Job] = []
    for i in range(60):
        build = recurring if rng.random() < 0.4 else once
        job = build(rng.choice(statuses), rng.choice(projects))
        if i % 5 == 0:
            job = make_job(user_id="bob", project_id=job.project_id, status=job.status)
        if rng.random() < 0.3:
            job = dataclasses.replace(job, queue="reports")
        jobs.append(job)
    for start in range(0, len(jobs), 7):  # several batches: positions interleave users
        await store.insert_jobs(jobs[start : start + 7])

    status_sets = [
        frozenset(),
        frozenset({JobStatus.PENDING}),
        frozenset({JobStatus.FAILED, JobStatus.PAUSED, JobStatus.RUNNING}),
    ]
    searches = [
        None,
        "alpha",
        "bet",
        "Gamma",
        jobs[3].job_id[:2],
        "nothing",
        jobs[7].job_id,
        jobs[10].job_id,
    ]
    grid = itertools.product(
        status_sets, [None, "alpha"], [None, *JobKind], [None, "reports"], searches
    )
    for sts, project, kind, queue, search in grid:
        filters = {"statuses": sts, "project_id": project, "kind": kind, "queue": queue}
        params = ListJobsParams(user_id=ALICE, search=search, **filters)  # type: ignore[arg-type]
        want = [j.job_id for j in jobs if j.user_id == ALICE and job_listed(j, params)]
        got = await ids(store, limit=3, search=search, **filters)
        assert got == want, params


async def test_a_page_carries_the_newest_runs_of_its_jobs(store: Store) -> None:
    busy = make_job(cron="* * * * *", max_retries=1)
    idle = make_job(next_fire_at=None)
    await store.insert_jobs([busy, idle])
    for minute in range(12):  # 12 fires; every third one fails once, then completes
        now = at(60 * minute)
        assert len(await claim_due(store, now)) == 1
        for attempt_ok in (minute % 3 != 0, True):
            (claimed,) = await claim_runs(store, "w1", now + timedelta(seconds=5))
            status = RunStatus.COMPLETED if attempt_ok else RunStatus.RETRY_SCHEDULED
            retry = None if attempt_ok else now + timedelta(seconds=5)
            done = outcome(claimed, status, started_at=now, retry_at=retry)
            assert await store.complete_runs([done]) == [True]
            if attempt_ok:
                break

    page = await store.list_jobs(ListJobsParams(user_id=ALICE, recent_runs=10))
    newest = await store.list_runs(ALICE, busy.job_id, 10)
    assert [j.job_id for j in page.items] == [busy.job_id, idle.job_id]
    assert page.recent_runs[busy.job_id] == [RunBrief.of(r) for r in newest]
    assert len(newest) == 10 and newest[0].scheduled_for == at(660)
    assert {r.status for r in newest} == {RunStatus.COMPLETED, RunStatus.RETRY_SCHEDULED}
    assert idle.job_id not in page.recent_runs  # no run yet

    one = await store.list_jobs(ListJobsParams(user_id=ALICE, recent_runs=1, limit=1))
    assert one.recent_runs == {busy.job_id: [RunBrief.of(newest[0])]}
    assert (await store.list_jobs(ListJobsParams(user_id=ALICE))).recent_runs == {}
    bobs = await store.list_jobs(ListJobsParams(user_id="bob", recent_runs=10))
    assert bobs.items == [] and bobs.recent_runs == {}


async def test_recent_runs_follow_each_page(store: Store) -> None:
    jobs = [once() for _ in range(5)]
    await store.insert_jobs(jobs)
    assert len(await claim_due(store, T0)) == 5
    page1 = await store.list_jobs(ListJobsParams(user_id=ALICE, recent_runs=3, limit=2))
    page2 = await store.list_jobs(
        ListJobsParams(user_id=ALICE, recent_runs=3, limit=2, cursor=page1.next_cursor)
    )
    for page in (page1, page2):
        assert sorted(page.recent_runs) == sorted(j.job_id for j in page.items)
        for job_id, briefs in page.recent_runs.items():
            (run,) = await store.list_runs(ALICE, job_id)
            assert briefs == [RunBrief.of(run)]
            assert run.status is RunStatus.QUEUED and run.scheduled_for == T0
