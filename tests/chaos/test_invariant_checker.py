"""The invariant checker catches what it claims to: each I1–I7 violation, written
into a real store by hand, is reported; the same history with its fault is clean.

A checker that never fails proves nothing, so this runs before the scenarios (no
cluster: rows are inserted directly into a fresh database).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from chronoq.domain.clock import format_rfc3339
from chronoq.domain.states import LOST_TO_LEASE
from tests.support.postgres import create_database, drop_database
from tests.support.times import utcnow

from .harness import (
    USER,
    ChaosPostgres,
    Db,
    Execution,
    Fault,
    JobBook,
)
from .invariants import Report, check

pytestmark = pytest.mark.chaos

T0 = utcnow().replace(microsecond=0) - timedelta(minutes=5)
LEASE_LOST = "lease expired: the worker stopped heartbeating"


class Store:
    def __init__(self, db: Db) -> None:
        self.db = db
        self.book = JobBook()
        self.executions: list[Execution] = []
        self.faults: list[Fault] = []

    def job(self, *, cron: str | None = None, first: datetime = T0, accepted: bool = True,
            next_fire_at: datetime | None = None) -> str:  # fmt: skip
        job_id = str(uuid.uuid4())
        self.db.execute(
            "INSERT INTO jobs (job_id, user_id, project_id, payload, payload_size, cron_schedule,"
            " next_fire_at, shard_id, status, max_retries, created_at, updated_at)"
            " VALUES ($1, $2, 'p', 'cmd:probe', 9, $3, $4, 0, 'PENDING', 0, $5, $5)",
            uuid.UUID(job_id), USER, cron, next_fire_at, first,
        )  # fmt: skip
        if accepted:
            spec: dict[str, Any] = {"payload": "cmd:probe", "cron_schedule": cron}
            self.book.accept(spec, {"job_id": job_id, "next_fire_at": format_rfc3339(first)})
        return job_id

    def run(self, job_id: str, scheduled: datetime, attempt: int = 1, status: str = "COMPLETED",
            *, error: str | None = None, lease_until: datetime | None = None,
            worker: str = "worker-1", executed: bool = True,
            started: datetime | None = None) -> None:  # fmt: skip
        started = started or scheduled
        self.db.execute(
            "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
            " triggered_at, available_at, started_at, completed_at, worker_id, error_message,"
            " lease_owner, lease_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $4, $8, $9, $10,"
            " $11, $12, $13)",
            uuid.uuid4(), uuid.UUID(job_id), USER, scheduled, attempt, status,
            scheduled - timedelta(seconds=0.5), started,
            None if status == "RUNNING" else started + timedelta(seconds=1), worker, error,
            worker if status == "RUNNING" else None, lease_until,
        )  # fmt: skip
        if executed:
            self.executions.append(
                Execution(
                    job_id=job_id, scheduled_for=scheduled, attempt=attempt, pid=1, started=started
                )
            )

    def check(self) -> Report:
        return check(
            self.db, self.book, self.executions, self.faults, cutoff=T0 + timedelta(seconds=2.5)
        )


@pytest.fixture
def store(pg: ChaosPostgres, pg_template: str) -> Iterator[Store]:
    name = f"chaos_check_{uuid.uuid4().hex[:10]}"
    db = Db(create_database(pg.dsn, name, template=pg_template))
    try:
        yield Store(db)
    finally:
        drop_database(pg.dsn, name)


def _only(report: Report, invariant: str) -> None:
    found = {k for k, v in report.problems.items() if v}
    assert found == {invariant}, report


def test_a_clean_history_is_clean(store: Store) -> None:
    store.run(store.job(), T0)
    recurring = store.job(cron="@every 1s", next_fire_at=T0 + timedelta(seconds=3))
    for i in range(3):
        store.run(recurring, T0 + timedelta(seconds=i))
    report = store.check()
    assert report.ok, report


def test_i1_lost_one_shot(store: Store) -> None:
    store.job()  # accepted, due, never fired
    _only(store.check(), "I1 fire lost")


def test_i1_recurring_fire_skipped_without_an_outage(store: Store) -> None:
    recurring = store.job(cron="@every 1s", next_fire_at=T0 + timedelta(seconds=4))
    store.run(recurring, T0)
    store.run(recurring, T0 + timedelta(seconds=1))
    store.run(recurring, T0 + timedelta(seconds=3))  # +2 s skipped, +1 s claimed on time
    report = store.check()
    assert report.problems["I1 schedule broken"], report


def test_i2_two_terminal_outcomes(store: Store) -> None:
    store.db.execute("DROP INDEX runs_one_terminal_per_fire")  # the schema forbids it
    job = store.job()
    store.run(job, T0, 1, "COMPLETED")
    store.run(job, T0, 2, "COMPLETED", executed=False)
    report = store.check()
    assert report.problems["I2 two terminal outcomes"], report


def test_i3_duplicate_needs_a_fault(store: Store) -> None:
    job = store.job()
    store.run(job, T0, 1, "RETRY_SCHEDULED", error=LEASE_LOST)
    store.run(job, T0, 2, "COMPLETED", started=T0 + timedelta(seconds=5))
    _only(store.check(), "I3 duplicate execution without a fault")
    store.faults.append(
        Fault(
            at=(T0 + timedelta(seconds=1)).timestamp(),
            action="SIGKILL",
            target="worker-1",
            role="worker",
        )
    )
    report = store.check()
    assert report.ok and report.stats["duplicates_after_kill"] == 1, report


def test_i3_execution_without_a_run_and_outcome_without_execution(store: Store) -> None:
    job = store.job()
    store.run(job, T0, executed=False)
    store.executions.append(
        Execution(job_id=str(uuid.uuid4()), scheduled_for=T0, attempt=1, pid=1, started=T0)
    )
    report = store.check()
    assert report.problems["I3 execution without a run"], report
    assert report.problems["I3 outcome recorded without an execution"], report


def test_i4_stuck_running(store: Store) -> None:
    job = store.job()
    store.run(job, T0, status="RUNNING", lease_until=utcnow() - timedelta(seconds=30))
    report = store.check()
    assert report.problems["I4 stuck RUNNING"], report


def test_i5_started_early(store: Store) -> None:
    job = store.job()
    store.run(job, T0, started=T0 - timedelta(milliseconds=300))
    report = store.check()
    assert report.problems["I5 started early"], report


def test_i6_attempts_must_be_contiguous(store: Store) -> None:
    job = store.job()
    store.run(job, T0, 1, "RETRY_SCHEDULED", executed=False)
    store.run(job, T0, 3, "COMPLETED")
    _only(store.check(), "I6 attempts not 1..n")


def test_i7_accepted_job_lost(store: Store) -> None:
    body = {"job_id": str(uuid.uuid4()), "next_fire_at": format_rfc3339(utcnow())}
    store.book.accept({"payload": "cmd:probe"}, body)
    _only(store.check(), "I7 accepted job lost")


def test_i3_an_interrupted_attempt_explains_its_redelivery(store: Store) -> None:
    job = store.job()
    store.run(job, T0, 1, "INTERRUPTED", error=LOST_TO_LEASE)
    store.run(job, T0, 2, "COMPLETED", started=T0 + timedelta(seconds=5))
    report = store.check()
    assert report.ok, report
    assert report.stats["duplicates_interrupted"] == 1, report
    assert report.stats["duplicates_interrupted_without_fault"] == 1, report


def test_i6_an_interrupted_attempt_is_followed_by_another(store: Store) -> None:
    job = store.job()
    store.run(job, T0, 1, "INTERRUPTED", error=LOST_TO_LEASE, executed=False)
    report = store.check()
    assert report.problems["I6 retry without a next attempt"], report
    assert report.problems["I1 fire without an outcome"], report  # INTERRUPTED ends no fire
