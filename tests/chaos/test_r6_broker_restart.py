"""R6: the dispatch broker (Redis Streams, SQS) crashed, flushed and restarted with fires
pending, under load (one-shot, scheduled and recurring probe jobs).

Must hold: fires are re-derived from the store (the run table is the queue's outbox,
and the leader's relay rebuilds an emptied broker), none lost and none executed twice
— the broker's faults never cost a run its lease or an attempt (I1–I7, and no fire in
the ledger twice). A broker is crashed while down for a while (pickers keep claiming,
sends fail, runs wait in the store), brought back empty at once, and (Redis) emptied
while up with FLUSHALL (its stream and consumer group gone).
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import redis

from tests.integration import test_queue_dispatch_brokers as broker_fixtures
from tests.integration.test_queue_dispatch_brokers import Broker
from tests.support.times import at, utcnow

from .conftest import Chaos
from .harness import SETTLE, hold

pytestmark = pytest.mark.chaos

broker, redis_factory = broker_fixtures.broker, broker_fixtures.redis_factory
sqs_factory = broker_fixtures.sqs_factory

ROUNDS = 3


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
