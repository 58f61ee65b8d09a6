"""Killed pickers and workers: the seed's chaos scenarios 1 and 2, and RELIABILITY R2.

Each scenario runs a real cluster (one process per role over PostgreSQL), kills a
process with SIGKILL at a chosen moment and checks the store and the ledger of
actual executions (I1–I7) afterwards.
"""

from __future__ import annotations

import time

import pytest

from tests.support.times import at, utcnow
from tests.support.waiting import wait_for

from .conftest import Chaos
from .harness import LEASE, LOOKAHEAD, MEMBER_TTL, REAP_INTERVAL, hold

MEMBER_REAP = 1.0  # the leader's reap pass in distributed mode (services/coordinator.py)

pytestmark = pytest.mark.chaos


@pytest.mark.chaos(seed=1)
def test_seed_chaos_1_no_picker_no_fire_then_exactly_one(chaos: Chaos) -> None:
    """Seed chaos 1: a fire due while no picker lives does not run; after restart it runs once."""
    chaos.cluster(api=1, coordinator=1, picker=1, worker=1)
    job = chaos.api.submit(payload=chaos.ledger.probe(0.2), next_fire_at=at(4.0))
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
    assert wait_for(lambda: len(chaos.executions(job.job_id)) >= 1, 15), chaos.runs(job.job_id)
    cutoff = utcnow()
    report = chaos.settle_and_check(cutoff)
    assert report.ok, report
    runs = chaos.runs(job.job_id)
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "COMPLETED")], runs
    assert len(chaos.executions(job.job_id)) == 1


@pytest.mark.chaos(seed=2)
def test_seed_chaos_2_worker_killed_mid_job_completes_as_attempt_2(chaos: Chaos) -> None:
    """Seed chaos 2: the worker dies mid-job; after its restart attempt 2 completes, once."""
    chaos.cluster(api=1, coordinator=1, picker=1, worker=1)
    job = chaos.api.submit(payload=chaos.ledger.probe(8.0))
    assert job is not None, chaos.book.summary()
    assert wait_for(lambda: chaos.executions(job.job_id), 15), chaos.runs(job.job_id)
    hold(1.0)  # mid-job
    chaos.sup.kill("worker-1")
    chaos.sup.start("worker-1")

    def completed() -> bool:
        return any(r["status"] == "COMPLETED" for r in chaos.runs(job.job_id))

    assert wait_for(completed, LEASE + REAP_INTERVAL + 8.0 + 10.0, interval=0.2), chaos.runs(
        job.job_id
    )
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


@pytest.mark.chaos(seed=3)
def test_r2_redelivery_elsewhere_after_lease_and_heartbeats_keep_healthy_jobs(
    chaos: Chaos,
) -> None:
    """R2: a worker SIGKILLed 3 s into a 10 s job: attempt 2 starts on the other worker once
    the dead worker's membership expired (member ttl + one reap pass, before its lease could);
    one terminal record. A healthy job longer than three lease lengths on the live worker is
    never redelivered: its heartbeats keep its lease and its membership."""
    chaos.cluster(api=1, coordinator=1, picker=1, worker=2)
    doomed = chaos.api.submit(payload=chaos.ledger.probe(10.0))
    assert doomed is not None
    assert wait_for(lambda: chaos.executions(doomed.job_id), 15), chaos.runs(doomed.job_id)
    victim = _member(chaos.runs(doomed.job_id)[0]["worker_id"])
    survivor = next(m.name for m in chaos.sup.by_role("worker") if m.name != victim)

    # Place the healthy job on the survivor: the victim cannot claim while frozen (briefly,
    # far inside its lease).
    chaos.sup.freeze(victim)
    healthy = chaos.api.submit(payload=chaos.ledger.probe(3 * LEASE + 2.0))
    assert healthy is not None
    started = wait_for(lambda: chaos.executions(healthy.job_id), 10)
    chaos.sup.thaw(victim)
    assert started, chaos.runs(healthy.job_id)
    assert _member(chaos.runs(healthy.job_id)[0]["worker_id"]) == survivor

    first = chaos.executions(doomed.job_id)[0]
    hold(3.0 - (time.time() - first.started.timestamp()))  # 3 s into the job
    killed = chaos.sup.kill(victim)

    def second_attempt() -> list[object]:
        return [e for e in chaos.executions(doomed.job_id) if e.attempt == 2]

    found = wait_for(second_attempt, MEMBER_TTL + MEMBER_REAP + 6.0, interval=0.1)
    assert found, chaos.runs(doomed.job_id)
    redelivered_after = found[0].started.timestamp() - killed.at  # type: ignore[attr-defined]
    runs = chaos.runs(doomed.job_id)
    assert _member(runs[1]["worker_id"]) == survivor, runs
    # Not before its membership could have expired (last heartbeat <= the kill), and within
    # the member ttl plus a reap pass (and the survivor's claim), long before the lease.
    low = MEMBER_TTL - MEMBER_TTL / 3 - 0.2
    assert low <= redelivered_after <= MEMBER_TTL + MEMBER_REAP + 1.5, redelivered_after
    assert "membership" in (runs[0]["error_message"] or ""), runs
    print(
        f"R2: attempt 2 started {redelivered_after:.2f}s after the SIGKILL"
        f" (member ttl {MEMBER_TTL}s, lease {LEASE}s)"
    )

    chaos.sup.start(victim)
    assert wait_for(
        lambda: any(r["status"] == "COMPLETED" for r in chaos.runs(doomed.job_id)), 20
    ), chaos.runs(doomed.job_id)
    assert wait_for(
        lambda: any(r["status"] == "COMPLETED" for r in chaos.runs(healthy.job_id)), 15
    ), chaos.runs(healthy.job_id)
    healthy_runs = chaos.runs(healthy.job_id)
    assert [(r["attempt"], r["status"]) for r in healthy_runs] == [(1, "COMPLETED")], healthy_runs
    assert len(chaos.executions(healthy.job_id)) == 1
    doomed_runs = chaos.runs(doomed.job_id)
    assert [(r["attempt"], r["status"]) for r in doomed_runs] == [
        (1, "INTERRUPTED"),
        (2, "COMPLETED"),
    ], doomed_runs
    report = chaos.settle_and_check(utcnow())
    assert report.ok, report


def _member(worker_id: str) -> str:
    """The supervisor's name of the worker that holds a lease (its member id)."""
    return worker_id.split("#", 1)[0]
