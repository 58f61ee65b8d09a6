"""The seed's two chaos tests, written once and run on every stack: PostgreSQL alone
(``test_process_faults.py``) and the seed-shaped stack (``test_seed_stack.py``).

Each takes a started, settled cluster of one api, coordinator, picker and worker, and
``payload(probe)``: what to submit for a ledger probe (the stack pads it past 1 KiB so
it goes through S3).
"""

from __future__ import annotations

from collections.abc import Callable

from tests.support.times import at, utcnow
from tests.support.waiting import wait_for

from .conftest import Chaos
from .harness import LEASE, LOOKAHEAD, REAP_INTERVAL, hold


def no_picker_no_fire_then_exactly_one(
    chaos: Chaos, payload: Callable[[str], str] = str, due_in: float = 4.0
) -> None:
    """Seed chaos 1: a fire due while no picker lives does not run; after restart it runs once."""
    job = chaos.api.submit(payload=payload(chaos.ledger.probe(0.2)), next_fire_at=at(due_in))
    assert job is not None, chaos.book.summary()
    chaos.sup.kill("picker-1")
    assert (job.next_fire_at - utcnow()).total_seconds() > LOOKAHEAD, "killed too late"

    def ran() -> bool:
        return bool(chaos.runs(job.job_id) or chaos.executions(job.job_id))

    past_due = (job.next_fire_at - utcnow()).total_seconds() + 2.0
    assert not wait_for(ran, past_due, interval=0.1), (
        f"the fire ran with no picker alive: {chaos.runs(job.job_id)}"
    )
    chaos.sup.start("picker-1")
    chaos.sup.wait_cluster()
    assert wait_for(lambda: len(chaos.executions(job.job_id)) >= 1, 20), chaos.runs(job.job_id)
    report = chaos.settle_and_check(utcnow())
    assert report.ok, report
    runs = chaos.runs(job.job_id)
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "COMPLETED")], runs
    assert len(chaos.executions(job.job_id)) == 1


def worker_killed_mid_job_completes_as_attempt_2(
    chaos: Chaos, payload: Callable[[str], str] = str, slack: float = 10.0
) -> None:
    """Seed chaos 2: the worker dies mid-job; after its restart attempt 2 completes, once."""
    job = chaos.api.submit(payload=payload(chaos.ledger.probe(8.0)))
    assert job is not None, chaos.book.summary()
    assert wait_for(lambda: chaos.executions(job.job_id), 20), chaos.runs(job.job_id)
    hold(1.0)  # mid-job
    chaos.sup.kill("worker-1")
    chaos.sup.start("worker-1")

    def completed() -> bool:
        return any(r["status"] == "COMPLETED" for r in chaos.runs(job.job_id))

    within = LEASE + REAP_INTERVAL + 8.0 + slack
    assert wait_for(completed, within, interval=0.2), chaos.runs(job.job_id)
    runs = chaos.runs(job.job_id)
    assert [(r["attempt"], r["status"]) for r in runs] == [
        (1, "INTERRUPTED"),
        (2, "COMPLETED"),
    ], runs
    assert (runs[0]["error_message"] or "").startswith("interrupted:"), runs
    assert sorted(e.attempt for e in chaos.executions(job.job_id)) == [1, 2]
    report = chaos.settle_and_check(utcnow())
    assert report.ok, report
    assert report.stats["duplicates_after_kill"] == 1, report
