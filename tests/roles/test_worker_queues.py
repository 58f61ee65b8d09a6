"""The worker role with ``--queues`` and limits, in-process (MemoryStore + FakeClock): it
runs only its queues' runs, holds a queue limit across its own runs, takes a freed slot
within a recheck, and never spins on runs it passes over."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from test_worker import Rig, rig  # noqa: F401  (the fixture, shared; tests/roles is on sys.path)

from chronoq.domain.queues import ClaimLimits
from chronoq.domain.states import RunStatus
from chronoq.ports.dispatch import ClaimDueParams


async def _queued(rig: Rig, payload: str, queue: str) -> str:  # noqa: F811
    now = rig.clock.now()
    job = replace(rig.job(payload, now), queue=queue)
    await rig.store.insert_jobs([job])
    assert await rig.store.claim_due(ClaimDueParams(shards=None, now=now, horizon=now))
    return job.job_id


async def test_a_worker_runs_only_its_queues_and_does_not_spin(rig: Rig) -> None:  # noqa: F811
    claims: list[str] = []

    async def count(*_args: Any) -> None:
        claims.append("claim_runs")

    rig.spy.before["claim_runs"] = count
    other = await _queued(rig, "fake:not mine", "b")
    mine = await _queued(rig, "fake:mine", "a")
    worker = rig.worker(queues=frozenset({"a"}))
    await worker.start()
    await rig.clock.advance(0.01)
    assert [c.request.job_id for c in rig.fake.calls.values()] == [mine]
    before = len(claims)
    await rig.clock.advance(2.0)  # "b"'s run is ready all along: rechecks, not a spin
    assert 5 <= len(claims) - before <= 15, len(claims) - before
    assert (await rig.run(other)).status is RunStatus.QUEUED


async def test_a_queue_limit_takes_a_freed_slot_within_a_recheck(rig: Rig) -> None:  # noqa: F811
    first = await _queued(rig, "fake:first", "gpu")
    second = await _queued(rig, "fake:second", "gpu")
    free = await _queued(rig, "fake:other queue", "default")
    worker = rig.worker(limits=ClaimLimits(per_queue={"gpu": 1}))
    await worker.start()
    await rig.clock.advance(0.01)
    started = {c.request.job_id: c for c in rig.fake.calls.values()}
    assert set(started) == {first, free}
    await rig.clock.advance(3.0)
    assert second not in {c.request.job_id for c in rig.fake.calls.values()}
    rig.fake.finish(started[first].request.run_id)
    finished_at = rig.clock.now()
    await rig.clock.advance(0.5)
    (call,) = [c for c in rig.fake.calls.values() if c.request.job_id == second]
    assert call.at - finished_at <= timedelta(seconds=0.25)
