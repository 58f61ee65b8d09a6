"""``fire_at_insert``: which new jobs have their first fire claimed in their insert, and
that the claim is exactly the picker's (``plan_claim``) for those it takes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chronoq.domain.claims import DueJob, plan_claim
from chronoq.domain.fire_now import fire_at_insert, fired_job_ids, stored_fired
from chronoq.domain.jobs import Job
from chronoq.domain.policies import Misfire, Policies
from chronoq.domain.states import JobStatus, RunStatus

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)


def job(**changes: object) -> Job:
    base = Job(
        job_id="0193a3b2-0000-7000-8000-000000000001", user_id="alice", project_id="p",
        payload="echo hi", payload_ref=None, payload_size=7, cron_schedule=None,
        timezone=None, next_fire_at=NOW, shard_id=3, status=JobStatus.PENDING,
        max_retries=2, timeout_seconds=None, created_at=NOW, updated_at=NOW,
        queue="emails", priority=7,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_job_due_now_is_stored_fired_with_one_queued_run() -> None:
    run = fire_at_insert(job(), NOW)
    assert run is not None
    stored = stored_fired(job())
    assert (stored.next_fire_at, stored.fire_count, stored.status) == (None, 1, JobStatus.PENDING)
    assert stored == replace(job(), next_fire_at=None, fire_count=1)  # nothing else changed
    assert (run.job_id, run.user_id, run.attempt, run.status) == (
        stored.job_id, "alice", 1, RunStatus.QUEUED,
    )  # fmt: skip
    assert (run.scheduled_for, run.triggered_at, run.available_at) == (NOW, NOW, NOW)
    assert (run.queue, run.priority) == ("emails", 7)
    assert fire_at_insert(job(), NOW).run_id != run.run_id  # type: ignore[union-attr]


def test_a_job_due_in_the_past_fires_at_its_due_time() -> None:
    due = NOW - timedelta(seconds=2)  # the submission took a while; still on time
    run = fire_at_insert(job(next_fire_at=due), NOW)
    assert run is not None and run.scheduled_for == due


@pytest.mark.parametrize(
    "changes",
    [
        {"next_fire_at": NOW + timedelta(milliseconds=1)},  # not due yet: a picker's
        {"next_fire_at": None},  # never due
        {"cron_schedule": "@every 1s"},  # its next fire is a picker's to plan
        {"status": JobStatus.PAUSED},
        {"status": JobStatus.COMPLETED},
        # the plan skips the one fire: the skip goes to the ledger through a picker
        {"next_fire_at": NOW - timedelta(minutes=1), "policies": Policies(misfire=Misfire.SKIP)},
        {"policies": Policies(end_at=NOW - timedelta(seconds=1))},
    ],
)
def test_other_jobs_are_left_to_a_picker(changes: dict[str, object]) -> None:
    assert fire_at_insert(job(**changes), NOW) is None


@pytest.mark.parametrize(
    "policies",
    [Policies(jitter_seconds=30), Policies(start_deadline_seconds=5), Policies(max_fires=1)],
)
def test_the_run_is_the_one_the_picker_would_plan(policies: Policies) -> None:
    new = job(policies=policies)
    run = fire_at_insert(new, NOW)
    assert run is not None
    plan = plan_claim(
        DueJob(job_id=new.job_id, cron_schedule=None, timezone=None, due=NOW, policies=policies),
        NOW,
    )
    (planned,) = plan.runs
    assert (run.scheduled_for, run.available_at) == (
        planned.scheduled_for, planned.available_at,
    )  # fmt: skip
    assert stored_fired(new).fire_count == plan.fire_count


def test_the_fired_ids_are_checked_against_the_insert() -> None:
    first, second = job(), job(job_id="0193a3b2-0000-7000-8000-000000000002")
    run = fire_at_insert(first, NOW)
    assert run is not None
    assert fired_job_ids([first, second], [run]) == {first.job_id}
    assert fired_job_ids([first], []) == frozenset()
    with pytest.raises(ValueError, match="same insert"):
        fired_job_ids([second], [run])
    with pytest.raises(ValueError, match="one run"):
        fired_job_ids([first], [run, replace(run, run_id="0193a3b2-0000-7000-8000-00000000000f")])
    with pytest.raises(ValueError, match="first attempt"):
        fired_job_ids([first], [replace(run, attempt=2)])
