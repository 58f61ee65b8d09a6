"""Killed pickers and workers: the seed's chaos scenarios 1 and 2, and RELIABILITY R2.

Each scenario runs a real cluster (one process per role over PostgreSQL), kills a
process with SIGKILL at a chosen moment and checks the store and the ledger of
actual executions (I1–I7) afterwards.
"""

from __future__ import annotations

import time

import pytest

from tests.support.times import utcnow
from tests.support.waiting import wait_for

from .conftest import Chaos
from .harness import LEASE, MEMBER_TTL, hold
from .seed_scenarios import (
    no_picker_no_fire_then_exactly_one,
    worker_killed_mid_job_completes_as_attempt_2,
)

MEMBER_REAP = 1.0  # the leader's reap pass in distributed mode (services/coordinator.py)

pytestmark = pytest.mark.chaos


@pytest.mark.chaos(seed=1)
def test_seed_chaos_1_no_picker_no_fire_then_exactly_one(chaos: Chaos) -> None:
    chaos.cluster(api=1, coordinator=1, picker=1, worker=1)
    no_picker_no_fire_then_exactly_one(chaos)


@pytest.mark.chaos(seed=2)
def test_seed_chaos_2_worker_killed_mid_job_completes_as_attempt_2(chaos: Chaos) -> None:
    chaos.cluster(api=1, coordinator=1, picker=1, worker=1)
    worker_killed_mid_job_completes_as_attempt_2(chaos)


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
