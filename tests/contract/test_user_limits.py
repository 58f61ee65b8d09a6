"""Store contract: per-user limits (issue 9.9, docs/limits.md) — active jobs at insert
(all or none, one count per batch), fires per rolling minute at claim (a user over it
waits, others are claimed, nothing is skipped or lost) and at a manual trigger."""

from __future__ import annotations

from collections import Counter

import pytest

from chronoq.domain.jobs import Job
from chronoq.domain.limits import CLAIM_ROUNDS, TOO_MANY_ACTIVE_JOBS, TOO_MANY_FIRES
from chronoq.domain.policies import Misfire, Policies
from chronoq.domain.states import JobStatus
from chronoq.errors import ConflictError, LimitExceededError
from chronoq.ports.dispatch import ClaimDueParams
from chronoq.ports.jobs import ListJobsParams
from chronoq.ports.store import Store

from .helpers import T0, at, fires_of, make_job, policy_job

EVERY_10 = "@every 10s"


async def _job_count(store: Store, user: str) -> int:
    page = await store.list_jobs(ListJobsParams(user_id=user, limit=10_000))
    return len(page.items)


async def _claim(
    store: Store,
    now_s: float,
    per_minute: int,
    *,
    limit: int = 1000,
    deferred: list[int] | None = None,
) -> list[str]:
    """Claim at ``at(now_s)`` under the fires limit; the users of the runs made."""
    runs = await store.claim_due(
        ClaimDueParams(
            shards=None, now=at(now_s), horizon=at(now_s), limit=limit,
            max_fires_per_minute=per_minute,
            on_deferred=None if deferred is None else deferred.append,
        )
    )  # fmt: skip
    return [run.user_id for run in runs]


# -- active jobs ---------------------------------------------------------------------------


async def test_inserts_up_to_the_active_limit_then_refuse_with_retry_after(store: Store) -> None:
    await store.insert_jobs([make_job(), make_job()], max_active_per_user=3)
    await store.insert_jobs([make_job()], max_active_per_user=3)

    with pytest.raises(LimitExceededError) as refused:
        await store.insert_jobs([make_job()], max_active_per_user=3)

    assert refused.value.code == TOO_MANY_ACTIVE_JOBS
    assert refused.value.retry_after >= 1
    assert "at most 3 active jobs" in str(refused.value)
    assert await _job_count(store, "alice") == 3
    await store.insert_jobs([make_job(user_id="bob")], max_active_per_user=3)  # per user


async def test_a_batch_over_the_limit_stores_nothing(store: Store) -> None:
    await store.insert_jobs([make_job()], max_active_per_user=3)
    batch = [make_job(), make_job(), make_job(user_id="bob"), make_job()]

    with pytest.raises(LimitExceededError):
        await store.insert_jobs(batch, max_active_per_user=3)

    assert await _job_count(store, "alice") == 1
    assert await _job_count(store, "bob") == 0  # all or none, other users' items too
    await store.insert_jobs(batch[:2], max_active_per_user=3)  # exactly up to the limit
    assert await _job_count(store, "alice") == 3


async def test_finished_jobs_do_not_count_and_finished_inserts_are_free(store: Store) -> None:
    first, second = make_job(), make_job()
    await store.insert_jobs([first, second], max_active_per_user=2)
    assert await store.cancel_job("alice", first.job_id, at(1)) is not None
    done = make_job(status=JobStatus.COMPLETED, next_fire_at=None)  # an ended schedule

    await store.insert_jobs([make_job(), done], max_active_per_user=2)

    with pytest.raises(LimitExceededError):
        await store.insert_jobs([make_job()], max_active_per_user=2)
    paused = await store.pause_job("alice", second.job_id, at(2))
    assert paused is not None and paused.status is JobStatus.PAUSED  # still active
    with pytest.raises(LimitExceededError):
        await store.insert_jobs([make_job()], max_active_per_user=2)


async def test_active_jobs_counts_what_the_limit_counts(store: Store) -> None:
    jobs = [make_job(), make_job(), make_job(), make_job(user_id="bob")]
    await store.insert_jobs([*jobs, make_job(status=JobStatus.COMPLETED, next_fire_at=None)])
    assert await store.cancel_job("alice", jobs[0].job_id, at(1)) is not None
    assert await store.pause_job("alice", jobs[1].job_id, at(1)) is not None

    assert await store.active_jobs("alice") == 2  # PAUSED and PENDING
    assert await store.active_jobs("bob") == 1
    assert await store.active_jobs("nobody") == 0


async def test_limit_zero_is_unlimited(store: Store) -> None:
    await store.insert_jobs([make_job() for _ in range(50)], max_active_per_user=0)
    await store.insert_jobs([make_job() for _ in range(50)])
    assert await _job_count(store, "alice") == 100


async def test_an_existing_job_inserted_again_if_absent_is_not_a_new_one(store: Store) -> None:
    """The replay of a job already stored (a submission log delivering twice) is no new
    active job: it is not refused, and nothing is added."""
    job = make_job()
    await store.insert_jobs([job, make_job()], max_active_per_user=2)

    await store.insert_jobs([job], if_absent=True, max_active_per_user=2)

    assert await _job_count(store, "alice") == 2
    with pytest.raises(LimitExceededError):
        await store.insert_jobs([make_job()], if_absent=True, max_active_per_user=2)


# -- fires per rolling minute --------------------------------------------------------------


async def test_a_user_gets_at_most_n_fires_per_rolling_minute(store: Store) -> None:
    await store.insert_jobs([make_job(next_fire_at=at(i / 10)) for i in range(5)])
    await store.insert_jobs([make_job(user_id="bob", next_fire_at=at(1))])
    deferred: list[int] = []

    assert sorted(await _claim(store, 1, 3, deferred=deferred)) == ["alice"] * 3 + ["bob"]
    assert deferred == [2]  # alice's last two wait
    assert await _claim(store, 30, 3) == []
    assert await _claim(store, 60.9, 3) == []  # the first three were made at at(1)
    assert await _claim(store, 61, 3) == ["alice", "alice"]  # at(1) left the window

    due = [j for j in (await store.list_jobs(ListJobsParams(user_id="alice"))).items]
    assert all(j.next_fire_at is None for j in due)  # each claimed once, none lost


async def test_deferred_fires_are_not_advanced_and_run_in_order(store: Store) -> None:
    jobs = [make_job(next_fire_at=at(i)) for i in range(4)]
    await store.insert_jobs(jobs)

    await _claim(store, 5, 1)
    waiting = [await store.get_job("alice", j.job_id) for j in jobs[1:]]

    assert [j.next_fire_at for j in waiting if j] == [at(1), at(2), at(3)]  # untouched
    for minute in (1, 2, 3):
        runs = await store.claim_due(
            ClaimDueParams(shards=None, now=at(5 + 60 * minute), horizon=at(5 + 60 * minute),
                           max_fires_per_minute=1)
        )  # fmt: skip
        assert [r.job_id for r in runs] == [jobs[minute].job_id]  # oldest first


@pytest.mark.parametrize("noisy_fires", [100_000])
async def test_a_noisy_user_does_not_delay_another_users_single_fire(
    store: Store, noisy_fires: int
) -> None:
    noisy = [make_job(user_id="noisy", next_fire_at=at(-1)) for _ in range(noisy_fires)]
    for start in range(0, noisy_fires, 5000):
        await store.insert_jobs(noisy[start : start + 5000])
    quiet = make_job(user_id="quiet", next_fire_at=at(0))
    await store.insert_jobs([quiet])

    first = Counter(await _claim(store, 0, 10, limit=500))

    assert first == {"noisy": 10, "quiet": 1}
    later = make_job(user_id="quiet", next_fire_at=at(5))
    await store.insert_jobs([later])
    assert await _claim(store, 5, 10, limit=500) == ["quiet"]  # noisy is out of budget
    assert Counter(await _claim(store, 60, 10, limit=500)) == {"noisy": 10}


async def test_many_noisy_users_cannot_starve_a_quiet_one(store: Store) -> None:
    """More noisy users than one claim's selects (``CLAIM_ROUNDS``), each with a page of
    due fires ahead of the quiet user's: users held back are left out of the next claim
    from its first select, so the quiet fire is claimed by the second claim at the latest."""
    users = CLAIM_ROUNDS + 4
    for n in range(users):
        noisy = [make_job(user_id=f"noisy{n:02}", next_fire_at=at(n - 100)) for _ in range(60)]
        await store.insert_jobs(noisy)
    await store.insert_jobs([make_job(user_id="quiet", next_fire_at=at(0))])

    first = await _claim(store, 0, 1, limit=50)
    second = await _claim(store, 0.5, 1, limit=50)

    assert "quiet" not in first  # its selects ran out on the first eight noisy users
    assert "quiet" in second
    assert Counter(first + second) == Counter(
        {"quiet": 1, **{f"noisy{n:02}": 1 for n in range(users)}}
    )  # one fire each: the limit, and every user served


async def test_every_nominal_fire_has_one_outcome_and_deferral_is_no_misfire(
    store: Store,
) -> None:
    """Three jobs every 10 s, two fires a minute: a growing backlog that only waits. No
    fire is skipped (not even under ``misfire=skip``), none runs twice, none is lost."""
    skip = Policies(misfire=Misfire.SKIP)
    jobs = [
        policy_job(cron=EVERY_10, next_fire_at=T0),
        policy_job(cron=EVERY_10, next_fire_at=T0),
        policy_job(skip, cron=EVERY_10, next_fire_at=T0),
    ]
    await store.insert_jobs(jobs)
    claimed = 0
    for step in range(0, 601, 10):
        claimed += len(await _claim(store, step, 2))

    assert claimed == 22  # two per minute: 0, 60, ..., 600 (and the first minute's two)
    listed = 0
    for job in jobs:
        fires = await fires_of(store, job)
        listed += len(fires)
        assert all(f.outcome != "SKIPPED" for f in fires)
        times = [f.scheduled_for for f in fires]
        assert times == [at(10 * i) for i in range(len(times))]  # consecutive, each once
        current = await store.get_job("alice", job.job_id)
        assert current is not None and current.next_fire_at == at(10 * len(times))
    assert listed == claimed


async def test_limit_zero_claims_every_due_fire(store: Store) -> None:
    await store.insert_jobs([make_job(next_fire_at=at(0)) for _ in range(30)])
    assert len(await _claim(store, 0, 0)) == 30


# -- manual fires --------------------------------------------------------------------------


async def _recurring(store: Store) -> Job:
    job = make_job(cron=EVERY_10, next_fire_at=at(10))
    await store.insert_jobs([job])
    return job


async def test_manual_fires_count_and_are_refused_over_the_limit(store: Store) -> None:
    job = await _recurring(store)
    assert await store.trigger_job("alice", job.job_id, at(0), max_fires_per_minute=2)
    assert await store.trigger_job("alice", job.job_id, at(20), max_fires_per_minute=2)

    with pytest.raises(LimitExceededError) as refused:
        await store.trigger_job("alice", job.job_id, at(45), max_fires_per_minute=2)

    assert refused.value.code == TOO_MANY_FIRES
    assert refused.value.retry_after == 15  # at(0) leaves the window at at(60)
    assert len(await fires_of(store, job)) == 2  # nothing made
    assert await _claim(store, 50, 2) == []  # the scheduled fire waits: the budget is spent
    assert await store.trigger_job("alice", job.job_id, at(60), max_fires_per_minute=2)
    assert await store.trigger_job("alice", job.job_id, at(61), max_fires_per_minute=0)


async def test_scheduled_fires_spend_the_manual_budget(store: Store) -> None:
    job = await _recurring(store)
    await store.insert_jobs([make_job(next_fire_at=at(5))])
    assert await _claim(store, 10, 2) == ["alice", "alice"]

    with pytest.raises(LimitExceededError):
        await store.trigger_job("alice", job.job_id, at(11), max_fires_per_minute=2)
    other = make_job(user_id="bob", cron=EVERY_10, next_fire_at=at(10))
    await store.insert_jobs([other])
    assert await store.trigger_job("bob", other.job_id, at(11), max_fires_per_minute=2)


async def test_a_missing_or_finished_job_answers_as_before_the_limit(store: Store) -> None:
    job = await _recurring(store)
    assert await store.trigger_job("alice", job.job_id, at(0), max_fires_per_minute=1)
    assert await store.trigger_job("bob", job.job_id, at(1), max_fires_per_minute=1) is None
    assert await store.cancel_job("alice", job.job_id, at(2)) is not None
    with pytest.raises(ConflictError):  # finished: 409 as always, not 429
        await store.trigger_job("alice", job.job_id, at(3), max_fires_per_minute=1)
