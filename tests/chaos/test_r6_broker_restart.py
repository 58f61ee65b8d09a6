"""R6: the dispatch broker (Redis Streams, SQS) crashed, flushed and restarted with fires
pending, under load (one-shot, scheduled and recurring probe jobs).

Must hold: fires are re-derived from the store (the run table is the queue's outbox,
and the leader's relay rebuilds an emptied broker), none lost and none executed twice
— the broker's faults never cost a run its lease or an attempt (I1–I7, and no fire in
the ledger twice). A broker is crashed while down for a while (pickers keep claiming,
sends fail, runs wait in the store), brought back empty at once, and (Redis) emptied
while up with FLUSHALL (its stream and consumer group gone). A second scenario adds
R1's random SIGKILLs (coordinators, pickers, workers) around one broker flush.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from tests.integration import test_queue_dispatch_brokers as broker_fixtures
from tests.integration.test_queue_dispatch_brokers import Broker
from tests.support.times import at, utcnow

from .conftest import Chaos, private_postgres
from .harness import SETTLE, ChaosPostgres, hold

pytestmark = pytest.mark.chaos

broker, redis_factory = broker_fixtures.broker, broker_fixtures.redis_factory
sqs_factory = broker_fixtures.sqs_factory

ROUNDS = 3
LOAD_SECONDS = 20.0


@pytest.fixture(scope="module")
def pg() -> Iterator[ChaosPostgres]:
    """A durable server (fsync and synchronous_commit on, as R5's): the store-outage test
    crashes it, and with the suite's fast default an acknowledged commit can be lost in
    the crash, a run's start among them, so its attempt ran again (CI saw I3 fail so)."""
    with private_postgres(fast=False) as server:
        yield server


def purge(b: Broker) -> None:
    """Empty the broker while it stays up (Redis: FLUSHALL); SQS: crash and restart."""
    if b.kind != "redis":
        b.flush()
        return
    client = redis.Redis.from_url(b.url, socket_timeout=5)
    try:
        client.flushall()
    finally:
        client.close()


@pytest.mark.chaos(seed=6)
def test_r6_broker_restarted_and_flushed_with_fires_pending(chaos: Chaos, broker: Broker) -> None:
    chaos.cluster(extra=("--dispatch", broker.url), api=1, coordinator=1, picker=2, worker=2)
    rng = random.Random(chaos.sup.seed)
    for schedule in ("@every 1s", "@every 1s", "*/2 * * * * *"):
        assert chaos.api.submit(payload=chaos.ledger.probe(0.2), cron_schedule=schedule)

    faults = ["crash", "flush", "purge"]
    for round_ in range(ROUNDS):
        for _ in range(5):
            chaos.api.submit(payload=chaos.ledger.probe(rng.uniform(0.1, 1.5)))
            chaos.api.submit(
                payload=chaos.ledger.probe(0.2), next_fire_at=at(rng.uniform(0.3, 3.0))
            )
        hold(rng.uniform(0.3, 1.0))
        fault = faults[round_ % len(faults)]
        chaos.sup.note(fault, broker.kind, "broker")
        if fault == "crash":  # down for a while: fires come due and wait in the store
            broker.crash()
            hold(rng.uniform(2.0, 4.0))
            broker.restart()
        elif fault == "flush":
            broker.flush()
        else:
            purge(broker)
        hold(rng.uniform(1.0, 2.0))

    chaos.sup.wait_cluster()
    cutoff = utcnow()
    hold(SETTLE)
    report = chaos.settle_and_check(cutoff, timeout=60)
    print(report)
    assert report.ok, str(report)
    per_fire = Counter((e.job_id, e.scheduled_for) for e in chaos.ledger.read())
    twice = {k: n for k, n in per_fire.items() if n > 1}
    assert not twice, f"broker faults must never execute a fire twice: {twice}"
    attempts = chaos.db.fetchval("SELECT count(*) FROM job_runs WHERE attempt > 1")
    assert attempts == 0, "no run lost its lease or an attempt to a broker fault"


KILL_ROLES = ("coordinator", "picker", "worker")


@pytest.mark.chaos(seed=61)
def test_r6_random_sigkills_with_a_queue_and_one_broker_flush(chaos: Chaos, broker: Broker) -> None:
    """R1's random SIGKILLs with the queue in between, and the broker emptied once: dead
    workers' held messages, a new leader's relay, requeued runs re-sent. Duplicates
    must be explained by the kills (the checker's I3); I1–I7 hold."""
    chaos.cluster(extra=("--dispatch", broker.url), api=1, coordinator=2, picker=2, worker=2)
    rng = random.Random(chaos.sup.seed)
    for schedule in ("@every 1s", "*/2 * * * * *"):
        job = chaos.api.submit(payload=chaos.ledger.probe(0.2), cron_schedule=schedule,
                               max_retries=2)  # fmt: skip
        assert job is not None, chaos.book.summary()

    restarts: list[tuple[float, str]] = []
    start = time.monotonic()
    next_kill, flushed = start + 2.0, False
    while (now := time.monotonic()) < start + LOAD_SECONDS:
        chaos.api.submit(payload=chaos.ledger.probe(rng.uniform(0.1, 2.0)), max_retries=2)
        chaos.api.submit(payload=chaos.ledger.probe(0.2), next_fire_at=at(rng.uniform(1, 5)),
                         max_retries=2)  # fmt: skip
        if now >= next_kill:
            fault = chaos.sup.kill_random(KILL_ROLES)
            restarts.append((now + rng.uniform(1.0, 2.0), fault.target))
            next_kill = now + rng.uniform(2.5, 3.5)
        if not flushed and now >= start + LOAD_SECONDS / 2:
            chaos.sup.note("flush", broker.kind, "broker")
            broker.flush()
            flushed = True
        for due, name in [r for r in restarts if r[0] <= now]:
            restarts.remove((due, name))
            chaos.sup.spawn(name)
        hold(0.3)

    for member in chaos.sup.members.values():
        if not member.alive:
            chaos.sup.spawn(member.name)
    for name in chaos.sup.members:
        chaos.sup.wait_up(name)
    chaos.sup.wait_cluster()
    cutoff = utcnow()
    hold(SETTLE)
    report = chaos.settle_and_check(cutoff, timeout=60)
    print(report)
    kills = [f for f in chaos.sup.faults if f.action == "SIGKILL"]
    assert len(kills) >= 4, chaos.sup.fault_log()
    assert report.ok, str(report)


STORE_OUTAGE = 8.0


@pytest.mark.chaos(seed=65)
def test_r6_store_outage_with_a_queue(chaos: Chaos, broker: Broker) -> None:
    """PostgreSQL crashes while the broker stays up: workers receive messages they cannot
    lease (held, redelivered, maybe dead-lettered); after the store is back every role
    heals by itself and fires due during the outage run (I1–I7). As in R5 (no queue), a
    run that finished during an outage longer than its lease may run again as its next
    attempt when the reaper wins the race against the worker's retried outcome: I3
    accepts such a duplicate only because the crash explains it."""
    chaos.cluster(extra=("--dispatch", broker.url), api=1, coordinator=1, picker=1, worker=2)
    for schedule in ("@every 1s", "*/2 * * * * *"):
        assert chaos.api.submit(payload=chaos.ledger.probe(0.2), cron_schedule=schedule)
    pids = {name: m.pid for name, m in chaos.sup.members.items()}
    for i in range(10):  # due around and inside the outage: some runs exist, some not yet
        chaos.api.submit(payload=chaos.ledger.probe(0.2), next_fire_at=at(0.3 + 0.4 * i))
    hold(0.5)
    chaos.sup.note("pg-crash", "postgres")
    chaos.pg.crash()
    hold(STORE_OUTAGE)
    chaos.pg.start()
    chaos.sup.note("pg-start", "postgres")
    chaos.sup.wait_cluster(timeout=30)
    cutoff = utcnow()
    hold(SETTLE)

    report = chaos.settle_and_check(cutoff, timeout=60)
    print(report)
    assert {name: m.pid for name, m in chaos.sup.members.items()} == pids, "a role restarted"
    assert report.ok, str(report)
