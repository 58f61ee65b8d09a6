"""Store contract: job control — pause, resume (with and without catch-up), trigger,
update_job (PATCH) and purge_job, each scoped to its owner (issue 9)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from chronoq.domain.jobs import BLOB_REF_PREFIX, JobChanges, output_key
from chronoq.domain.policies import Misfire, Policies, SkipReason
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.errors import ConflictError, ValidationError
from chronoq.ports.jobs import ListFiresParams
from chronoq.ports.store import Store

from .helpers import (
    T0,
    at,
    claim_due,
    claim_runs,
    complete,
    fires_of,
    job_now,
    lease_and_start,
    make_job,
    outcome,
    policy_job,
    run_by_id,
    runs_of,
)

EVERY_10 = "@every 10s"


# -- pause -----------------------------------------------------------------------------------


async def test_pause_holds_the_next_fire_and_skips_queued_runs_not_yet_due(store: Store) -> None:
    job = make_job(cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])
    (first,) = await claim_due(store, T0)
    (running,) = await lease_and_start(store, "w1", T0)
    (ahead,) = await claim_due(store, at(1), horizon=at(10))  # the look-ahead: due at +10 s
    assert ahead.available_at == at(10)

    paused = await store.pause_job(job.user_id, job.job_id, at(2))

    assert paused is not None
    assert paused.status is JobStatus.PAUSED
    assert (paused.next_fire_at, paused.paused_fire_at) == (None, at(20))
    assert paused.updated_at == at(2)
    assert await job_now(store, job) == paused
    skipped = await run_by_id(store, job, ahead.run_id)
    assert (skipped.status, skipped.completed_at) == (RunStatus.SKIPPED, at(2))
    assert skipped.error_message == "skipped: paused"
    still = await run_by_id(store, job, running.run_id)
    assert (still.status, still.started_at, still.worker_id) == (RunStatus.RUNNING, T0, "w1")
    fires = await fires_of(store, job)
    assert [(f.scheduled_for, f.outcome, f.reason, f.run_id) for f in fires] == [
        (T0, "RUNNING", None, first.run_id),
        (at(10), "SKIPPED", SkipReason.PAUSED, ahead.run_id),
    ]
    assert fires[1].count == 1 and fires[1].last_scheduled_for == at(10)
    assert (await store.skip_counts()).get(SkipReason.PAUSED) == 1
    assert await claim_due(store, at(1000)) == []  # a paused job is never due
    assert await store.next_due_at(None) is None


async def test_a_paused_jobs_running_run_ends_and_the_job_stays_paused(store: Store) -> None:
    job = make_job(cron=EVERY_10, next_fire_at=T0, max_retries=0)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    (claimed,) = await lease_and_start(store, "w1", T0)
    await store.pause_job(job.user_id, job.job_id, at(1))

    await complete(store, claimed, "w1", at(3))

    after = await job_now(store, job)
    assert (after.status, after.next_fire_at, after.paused_fire_at) == (
        JobStatus.PAUSED,
        None,
        at(10),
    )
    (run,) = await runs_of(store, job)
    assert run.status is RunStatus.COMPLETED


async def test_a_run_already_due_goes_on_and_its_claim_does_not_unpause(store: Store) -> None:
    job = make_job(cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])
    (due,) = await claim_due(store, T0)
    await store.pause_job(job.user_id, job.job_id, at(1))
    assert (await run_by_id(store, job, due.run_id)).status is RunStatus.QUEUED  # due: kept

    (claimed,) = await lease_and_start(store, "w1", at(2))
    assert claimed.run_id == due.run_id
    assert (await job_now(store, job)).status is JobStatus.PAUSED
    await store.complete_runs([outcome(claimed, RunStatus.FAILED, started_at=at(2), exit_code=1)])
    assert (await job_now(store, job)).status is JobStatus.PAUSED


async def test_pause_leaves_paused_and_terminal_jobs_unchanged(store: Store) -> None:
    job, done = make_job(cron=EVERY_10), make_job(cron=EVERY_10)
    await store.insert_jobs([job, done])
    first = await store.pause_job(job.user_id, job.job_id, at(1))
    await store.cancel_job(done.user_id, done.job_id, at(1))
    cancelled = await job_now(store, done)

    assert await store.pause_job(job.user_id, job.job_id, at(5)) == first
    assert await store.pause_job(done.user_id, done.job_id, at(5)) == cancelled
    assert (await job_now(store, done)).status is JobStatus.CANCELLED


# -- resume ----------------------------------------------------------------------------------


async def test_resume_skips_the_fires_missed_while_paused(store: Store) -> None:
    job = make_job(cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    await store.pause_job(job.user_id, job.job_id, at(1))

    resumed = await store.resume_job(job.user_id, job.job_id, at(45), catch_up=False)

    assert resumed is not None
    assert resumed.status is JobStatus.PENDING
    assert (resumed.next_fire_at, resumed.paused_fire_at) == (at(50), None)
    assert resumed.fire_count == 5  # T0, and the 4 skipped fires
    assert resumed.updated_at == at(45)
    (_, span) = await fires_of(store, job)
    assert (span.scheduled_for, span.last_scheduled_for, span.count) == (at(10), at(40), 4)
    assert (span.outcome, span.reason, span.run_id, span.manual) == (
        "SKIPPED",
        SkipReason.PAUSED,
        None,
        False,
    )
    assert (await store.skip_counts()).get(SkipReason.PAUSED) == 4
    assert await claim_due(store, at(49)) == []
    (run,) = await claim_due(store, at(50))
    assert run.scheduled_for == at(50)


async def test_resume_before_the_held_fire_keeps_it(store: Store) -> None:
    job = make_job(cron=EVERY_10, next_fire_at=at(10))
    await store.insert_jobs([job])
    await store.pause_job(job.user_id, job.job_id, T0)

    resumed = await store.resume_job(job.user_id, job.job_id, at(5), catch_up=False)

    assert resumed is not None
    assert (resumed.status, resumed.next_fire_at, resumed.fire_count) == (
        JobStatus.PENDING,
        at(10),
        0,
    )
    assert await fires_of(store, job) == []


@pytest.mark.parametrize("misfire", [Misfire.RUN_ONCE, Misfire.RUN_ALL])
async def test_resume_with_catch_up_hands_the_missed_fires_to_the_misfire_policy(
    store: Store, misfire: Misfire
) -> None:
    job = policy_job(Policies(misfire=misfire), cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    await store.pause_job(job.user_id, job.job_id, at(1))

    resumed = await store.resume_job(job.user_id, job.job_id, at(45), catch_up=True)

    assert resumed is not None
    assert (resumed.status, resumed.next_fire_at) == (JobStatus.PENDING, at(10))
    assert len(await fires_of(store, job)) == 1  # nothing skipped by the resume itself
    runs = await claim_due(store, at(45))
    after = await job_now(store, job)
    assert after.next_fire_at == at(50)
    fires = await fires_of(store, job)
    if misfire is Misfire.RUN_ALL:
        assert [r.scheduled_for for r in runs] == [at(10), at(20), at(30), at(40)]
        assert [f.outcome for f in fires] == ["QUEUED"] * 5
    else:
        assert [r.scheduled_for for r in runs] == [at(10)]
        span = fires[-1]
        assert (span.scheduled_for, span.last_scheduled_for, span.count, span.reason) == (
            at(20),
            at(40),
            3,
            SkipReason.MISFIRE,
        )
    assert after.fire_count == 5


async def test_resume_of_a_one_shot_job_keeps_its_fire(store: Store) -> None:
    job = make_job(next_fire_at=at(10))
    await store.insert_jobs([job])
    paused = await store.pause_job(job.user_id, job.job_id, T0)
    assert paused is not None and paused.paused_fire_at == at(10)

    resumed = await store.resume_job(job.user_id, job.job_id, at(100), catch_up=False)

    assert resumed is not None
    assert (resumed.status, resumed.next_fire_at) == (JobStatus.PENDING, at(10))
    (run,) = await claim_due(store, at(100))
    assert run.scheduled_for == at(10)


async def test_resume_leaves_a_job_that_is_not_paused_unchanged(store: Store) -> None:
    job = make_job(cron=EVERY_10, next_fire_at=at(10))
    await store.insert_jobs([job])
    before = await job_now(store, job)
    assert await store.resume_job(job.user_id, job.job_id, at(50), catch_up=False) == before
    assert await store.resume_job(job.user_id, job.job_id, at(50), catch_up=True) == before
    assert await fires_of(store, job) == []


# -- trigger ---------------------------------------------------------------------------------


async def test_trigger_queues_a_manual_fire_now_that_does_not_count(store: Store) -> None:
    job = policy_job(Policies(max_fires=1), cron="@every 60s", next_fire_at=T0)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    before = await job_now(store, job)
    assert (before.fire_count, before.next_fire_at) == (1, None)
    when = at(5.25)

    run = await store.trigger_job(job.user_id, job.job_id, when)

    assert run is not None
    assert (run.job_id, run.user_id, run.status, run.attempt, run.manual) == (
        job.job_id,
        job.user_id,
        RunStatus.QUEUED,
        1,
        True,
    )
    assert run.scheduled_for == run.available_at == run.triggered_at == when
    after = await job_now(store, job)
    assert (after.fire_count, after.next_fire_at, after.status) == (1, None, JobStatus.PENDING)
    manual = [f for f in await fires_of(store, job) if f.manual]
    assert [(f.scheduled_for, f.run_id, f.outcome, f.count) for f in manual] == [
        (when, run.run_id, "QUEUED", 1)
    ]
    assert (await run_by_id(store, job, run.run_id)).manual
    claimed = await claim_runs(store, "w1", when)
    assert run.run_id in {c.run_id for c in claimed}


@pytest.mark.parametrize("cron", ["@every 10s", "*/10 * * * * *"])
async def test_a_manual_fire_at_the_instant_of_a_scheduled_one_leaves_it_its_own_run(
    store: Store, cron: str
) -> None:
    job = make_job(cron=cron, next_fire_at=T0)
    await store.insert_jobs([job])
    (first,) = await claim_due(store, T0)

    now_manual = await store.trigger_job(job.user_id, job.job_id, T0)  # T0's run exists
    next_manual = await store.trigger_job(job.user_id, job.job_id, at(10))  # not claimed yet
    (second,) = await claim_due(store, at(10))

    assert now_manual is not None and next_manual is not None
    assert second.scheduled_for == at(10) and not second.manual
    for manual, fire in ((now_manual, T0), (next_manual, at(10))):
        assert fire < manual.scheduled_for < fire + timedelta(milliseconds=1)
        assert manual.available_at == manual.scheduled_for
    entries = await fires_of(store, job)
    assert [(e.scheduled_for, e.manual) for e in entries] == [
        (T0, False),
        (now_manual.scheduled_for, True),
        (at(10), False),
        (next_manual.scheduled_for, True),
    ]
    assert first.run_id == entries[0].run_id and second.run_id == entries[2].run_id


async def test_trigger_refuses_one_shot_and_terminal_jobs(store: Store) -> None:
    once, gone = make_job(next_fire_at=at(60)), make_job(cron=EVERY_10)
    await store.insert_jobs([once, gone])
    await store.cancel_job(gone.user_id, gone.job_id, T0)

    with pytest.raises(ConflictError):
        await store.trigger_job(once.user_id, once.job_id, at(1))
    with pytest.raises(ConflictError):
        await store.trigger_job(gone.user_id, gone.job_id, at(1))
    assert await runs_of(store, once) == [] and await runs_of(store, gone) == []


# -- update_job ------------------------------------------------------------------------------


def changes(**fields: object) -> JobChanges:
    return JobChanges(fields=frozenset(fields), **fields)  # type: ignore[arg-type]


async def test_a_new_schedule_recomputes_the_next_fire_from_now(store: Store) -> None:
    job = make_job(cron="@every 60s", next_fire_at=at(60))
    await store.insert_jobs([job])

    result = await store.update_job(job.user_id, job.job_id, changes(cron_schedule=EVERY_10), at(5))

    assert result is not None
    updated, replaced = result
    assert replaced is None
    assert (updated.cron_schedule, updated.next_fire_at, updated.updated_at) == (
        EVERY_10,
        at(15),
        at(5),
    )
    assert await job_now(store, job) == updated
    cron = await store.update_job(
        job.user_id, job.job_id, changes(cron_schedule="*/7 * * * * *"), at(5)
    )
    assert cron is not None and cron[0].next_fire_at == at(7)


async def test_a_paused_jobs_new_schedule_moves_its_held_fire(store: Store) -> None:
    job = make_job(cron="@every 60s", next_fire_at=at(60))
    await store.insert_jobs([job])
    await store.pause_job(job.user_id, job.job_id, T0)

    result = await store.update_job(job.user_id, job.job_id, changes(cron_schedule=EVERY_10), at(5))

    assert result is not None
    assert (result[0].status, result[0].next_fire_at, result[0].paused_fire_at) == (
        JobStatus.PAUSED,
        None,
        at(15),
    )


async def test_a_one_shot_whose_fire_was_claimed_cannot_be_retimed(store: Store) -> None:
    """Its one fire has a run: a new time would give it a second fire (409)."""
    job = make_job(next_fire_at=at(10))
    await store.insert_jobs([job])
    (run,) = await claim_due(store, at(10))
    with pytest.raises(ConflictError):
        await store.update_job(job.user_id, job.job_id, changes(next_fire_at=at(50)), at(11))
    claimed = await store.get_job(job.user_id, job.job_id)
    assert claimed is not None and claimed.next_fire_at is None
    assert [r.run_id for r in await runs_of(store, job)] == [run.run_id]


async def test_a_one_shot_jobs_time_changes(store: Store) -> None:
    job = make_job(next_fire_at=at(100))
    await store.insert_jobs([job])

    result = await store.update_job(job.user_id, job.job_id, changes(next_fire_at=at(50)), at(1))

    assert result is not None and result[0].next_fire_at == at(50)
    assert await claim_due(store, at(49)) == []
    (run,) = await claim_due(store, at(50))
    assert run.scheduled_for == at(50)


async def test_an_end_before_the_next_fire_completes_the_job(store: Store) -> None:
    job = make_job(cron="@every 60s", next_fire_at=at(60))
    await store.insert_jobs([job])

    result = await store.update_job(
        job.user_id, job.job_id, changes(policies=Policies(end_at=at(30))), at(5)
    )

    assert result is not None
    assert (result[0].status, result[0].next_fire_at) == (JobStatus.COMPLETED, None)
    assert result[0].policies == Policies(end_at=at(30))


async def test_a_payload_change_returns_the_reference_it_replaced(store: Store) -> None:
    ref = BLOB_REF_PREFIX + "payloads/old"
    job = make_job(cron=EVERY_10, payload=None, payload_ref=ref, next_fire_at=at(10))
    await store.insert_jobs([job])

    result = await store.update_job(
        job.user_id,
        job.job_id,
        JobChanges(
            fields=frozenset({"payload", "max_retries", "timeout_seconds"}),
            payload="echo new",
            payload_ref=None,
            payload_size=8,
            max_retries=3,
            timeout_seconds=12.5,
        ),
        at(1),
    )

    assert result is not None
    updated, replaced = result
    assert replaced == ref
    assert (updated.payload, updated.payload_ref, updated.payload_size) == ("echo new", None, 8)
    assert (updated.max_retries, updated.timeout_seconds) == (3, 12.5)
    assert updated.next_fire_at == at(10)  # not a schedule change: the fire stays
    again = await store.update_job(
        job.user_id,
        job.job_id,
        replace(changes(payload="echo newer"), payload_size=10),
        at(2),
    )
    assert again is not None and again[1] is None  # inline replaced inline: no blob
    await claim_due(store, at(10))
    (claimed,) = await claim_runs(store, "w1", at(10))
    assert claimed.payload == "echo newer"  # the next fire runs the new payload


async def test_update_refuses_terminal_jobs_and_wrong_kinds_of_change(store: Store) -> None:
    recurring, once, gone = make_job(cron=EVERY_10), make_job(next_fire_at=at(9)), make_job()
    await store.insert_jobs([recurring, once, gone])
    await store.cancel_job(gone.user_id, gone.job_id, T0)

    with pytest.raises(ConflictError):
        await store.update_job(gone.user_id, gone.job_id, changes(max_retries=2), at(1))
    with pytest.raises(ValidationError):
        await store.update_job(
            recurring.user_id, recurring.job_id, changes(next_fire_at=at(5)), at(1)
        )
    with pytest.raises(ValidationError):
        await store.update_job(once.user_id, once.job_id, changes(cron_schedule=EVERY_10), at(1))
    with pytest.raises(ValidationError):  # a schedule that never fires
        await store.update_job(
            recurring.user_id, recurring.job_id, changes(cron_schedule="0 0 30 2 *"), at(1)
        )
    assert (await job_now(store, recurring)).updated_at == T0
    assert (await job_now(store, recurring)).cron_schedule == EVERY_10
    assert (await job_now(store, once)).next_fire_at == at(9)


# -- purge -----------------------------------------------------------------------------------


async def test_purge_removes_the_job_with_everything_it_had(store: Store) -> None:
    payload_ref = BLOB_REF_PREFIX + "payloads/p1"
    job = policy_job(
        cron=EVERY_10, payload=None, payload_ref=payload_ref, next_fire_at=T0, idempotency_key="k1"
    )
    await store.insert_jobs([job])
    await claim_due(store, T0)
    (first,) = await lease_and_start(store, "w1", T0)
    out_ref = BLOB_REF_PREFIX + output_key(first.run_id, 1)
    done = replace(outcome(first, RunStatus.COMPLETED, completed_at=at(1)), output_ref=out_ref)
    assert await store.complete_runs([done]) == [True]
    await store.pause_job(job.user_id, job.job_id, at(2))
    await store.resume_job(job.user_id, job.job_id, at(35), catch_up=False)  # a skipped span
    assert len(await claim_due(store, at(40))) == 1
    (running,) = await lease_and_start(store, "w2", at(40))

    result = await store.purge_job(job.user_id, job.job_id)

    assert result is not None
    assert set(result.blob_refs) == {payload_ref, out_ref}
    assert result.running_run_ids == [running.run_id]
    assert await store.get_job(job.user_id, job.job_id) is None
    assert await store.list_runs(job.user_id, job.job_id) == []
    params = ListFiresParams(user_id=job.user_id, job_id=job.job_id, start=T0, end=at(100))
    assert await store.list_fires(params) is None
    assert await store.job_by_idempotency_key(job.user_id, "k1") is None
    assert await store.existing_job_ids([job.job_id]) == set()
    assert (await store.extend_leases("w2", [running.run_id], at(60))).held == []
    assert await store.complete_runs([outcome(running, RunStatus.COMPLETED, worker_id="w2")]) == [
        False
    ]
    assert await store.purge_job(job.user_id, job.job_id) is None
    again = policy_job(cron=EVERY_10, idempotency_key="k1")  # the key is free again
    await store.insert_jobs([again])
    assert await store.job_by_idempotency_key(job.user_id, "k1") == await job_now(store, again)


# -- tenant scoping --------------------------------------------------------------------------


async def test_every_control_method_treats_another_users_job_as_missing(store: Store) -> None:
    job = policy_job(cron=EVERY_10, next_fire_at=T0, idempotency_key="mine")
    await store.insert_jobs([job])
    await claim_due(store, T0)
    before = await job_now(store, job)
    runs = await runs_of(store, job)

    assert await store.pause_job("mallory", job.job_id, at(1)) is None
    assert await store.resume_job("mallory", job.job_id, at(1), catch_up=True) is None
    assert await store.trigger_job("mallory", job.job_id, at(1)) is None
    assert await store.update_job("mallory", job.job_id, changes(max_retries=5), at(1)) is None
    params = ListFiresParams(user_id="mallory", job_id=job.job_id, start=T0, end=at(100))
    assert await store.list_fires(params) is None
    assert await store.job_by_idempotency_key("mallory", "mine") is None
    assert await store.purge_job("mallory", job.job_id) is None

    assert await job_now(store, job) == before
    assert await runs_of(store, job) == runs
    assert await store.update_job(job.user_id, "no-such-job", changes(max_retries=5), at(1)) is None
    assert await store.pause_job(job.user_id, "no-such-job", at(1)) is None


async def test_pause_then_resume_keeps_runs_times_exact(store: Store) -> None:
    """Instants round-trip exactly through pause and resume (microseconds included)."""
    first = T0 + timedelta(microseconds=123_457)
    job = make_job(cron=EVERY_10, next_fire_at=first)
    await store.insert_jobs([job])
    await store.pause_job(job.user_id, job.job_id, T0)
    assert (await job_now(store, job)).paused_fire_at == first
    resumed = await store.resume_job(job.user_id, job.job_id, at(0.1), catch_up=False)
    assert resumed is not None and resumed.next_fire_at == first


async def test_a_schedule_moved_onto_a_fire_claimed_ahead_keeps_one_run_for_it(
    store: Store,
) -> None:
    job, other = make_job(cron=EVERY_10, next_fire_at=T0), make_job(next_fire_at=at(10))
    await store.insert_jobs([job])
    await claim_due(store, T0)
    (ahead,) = await claim_due(store, at(1), horizon=at(10))  # the picker's look-ahead
    assert ahead.scheduled_for == at(10)
    await store.insert_jobs([other])
    moved = await store.update_job(
        job.user_id, job.job_id, changes(cron_schedule="@every 5s"), at(5)
    )
    assert moved is not None and moved[0].next_fire_at == at(10)

    runs = await claim_due(store, at(10))

    assert [r.job_id for r in runs] == [other.job_id]  # the batch goes on
    assert [(e.scheduled_for, e.run_id) for e in await fires_of(store, job)] == [
        (T0, (await runs_of(store, job))[0].run_id),
        (at(10), ahead.run_id),
    ]
    assert (await job_now(store, job)).next_fire_at == at(15)


async def test_a_schedule_that_ended_while_paused_completes_at_resume(store: Store) -> None:
    job = policy_job(Policies(max_fires=2), cron=EVERY_10, next_fire_at=T0)
    await store.insert_jobs([job])
    await claim_due(store, T0)
    (claimed,) = await lease_and_start(store, "w1", T0)
    await complete(store, claimed, "w1", at(1))
    await store.pause_job(job.user_id, job.job_id, at(2))

    resumed = await store.resume_job(job.user_id, job.job_id, at(35), catch_up=False)

    assert resumed is not None
    assert (resumed.status, resumed.next_fire_at, resumed.fire_count) == (
        JobStatus.COMPLETED,
        None,
        2,
    )
    (_, span) = await fires_of(store, job)
    assert (span.scheduled_for, span.last_scheduled_for, span.count) == (at(10), at(10), 1)


async def test_a_manual_fire_never_takes_an_explicit_next_fire_off_the_schedule(
    store: Store,
) -> None:
    job = make_job(cron="*/10 * * * * *", next_fire_at=at(3))  # an explicit first fire
    await store.insert_jobs([job])

    manual = await store.trigger_job(job.user_id, job.job_id, at(3))
    (scheduled,) = await claim_due(store, at(3))

    assert manual is not None and at(3) < manual.scheduled_for < at(3.001)
    assert (scheduled.scheduled_for, scheduled.manual) == (at(3), False)
    assert (await job_now(store, job)).next_fire_at == at(10)


async def test_cancelling_a_paused_job_drops_its_held_fire(store: Store) -> None:
    job = make_job(cron=EVERY_10, next_fire_at=at(10))
    await store.insert_jobs([job])
    await store.pause_job(job.user_id, job.job_id, T0)

    result = await store.cancel_job(job.user_id, job.job_id, at(1))

    assert result is not None
    assert (result.job.status, result.job.next_fire_at, result.job.paused_fire_at) == (
        JobStatus.CANCELLED,
        None,
        None,
    )
    assert await store.resume_job(job.user_id, job.job_id, at(2), catch_up=True) == result.job
