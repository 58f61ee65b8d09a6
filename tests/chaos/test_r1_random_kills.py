"""R1: SIGKILL a random role every few seconds under mixed load; then I1–I7.

Two of each role (api, coordinator, picker, worker). For ~30 s the test submits
immediate one-shots, scheduled one-shots and (up front) recurring jobs, all ledger
probes of 0.1–3 s, while a seeded RNG picks a live process to SIGKILL about every
3 s; each victim is started again 1–2 s later. Then every role is up again, the
cluster settles for two lease lengths plus a reaper interval, and the invariant
checker runs over the store and the ledger.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.support.times import at, utcnow

from .conftest import Chaos
from .harness import SETTLE, hold

pytestmark = pytest.mark.chaos

LOAD_SECONDS = 30.0
KILL_EVERY = 3.0
ROLES = ("api", "coordinator", "picker", "worker")


@pytest.mark.chaos(seed=11)
def test_r1_random_sigkills_under_mixed_load(chaos: Chaos) -> None:
    chaos.cluster(api=2, coordinator=2, picker=2, worker=2)
    rng = random.Random(chaos.sup.seed + 1)
    probe = chaos.ledger.probe
    for i in range(6):
        schedule = "@every 1s" if i % 2 == 0 else "*/2 * * * * *"
        job = chaos.api.submit(
            payload=probe(rng.uniform(0.1, 0.5)), cron_schedule=schedule, max_retries=2
        )
        assert job is not None, chaos.book.summary()

    restarts: list[tuple[float, str]] = []
    next_kill = time.monotonic() + KILL_EVERY
    next_scheduled = time.monotonic()
    end = time.monotonic() + LOAD_SECONDS
    while time.monotonic() < end:
        now = time.monotonic()
        chaos.api.submit(payload=probe(rng.uniform(0.1, 3.0)), max_retries=2)
        if now >= next_scheduled:
            chaos.api.submit(
                payload=probe(rng.uniform(0.1, 3.0)),
                next_fire_at=at(rng.uniform(1.0, 8.0)),
                max_retries=2,
            )
            next_scheduled = now + 1.0
        if now >= next_kill:
            fault = chaos.sup.kill_random(ROLES)
            restarts.append((now + rng.uniform(1.0, 2.0), fault.target))
            next_kill = now + rng.uniform(0.8 * KILL_EVERY, 1.2 * KILL_EVERY)
        for due, name in [r for r in restarts if r[0] <= now]:
            restarts.remove((due, name))
            chaos.sup.spawn(name)
        hold(0.2)  # the load's pace: about five submissions a second

    for member in chaos.sup.members.values():
        if not member.alive:
            chaos.sup.spawn(member.name)
    for name in chaos.sup.members:
        chaos.sup.wait_up(name)
    chaos.sup.wait_cluster()
    cutoff = utcnow()
    hold(SETTLE)
    report = chaos.settle_and_check(cutoff, timeout=45)
    print(report)
    kills = [f for f in chaos.sup.faults if f.action == "SIGKILL"]
    assert len(kills) >= LOAD_SECONDS / KILL_EVERY - 2, chaos.sup.fault_log()
    assert len(chaos.book.jobs) >= 100, chaos.book.summary()
    assert report.ok, report
