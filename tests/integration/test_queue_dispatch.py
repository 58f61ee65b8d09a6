"""Queued dispatch end to end (``--dispatch redis://`` and ``sqs://``): real role processes
over a private PostgreSQL (the chaos harness: supervisor, probe ledger, invariant
checker), with a private Redis or moto SQS server.

* immediate, scheduled and recurring jobs run once each, and every run went through
  the broker (the store marked it published);
* a worker of one queue under a queue limit runs only that queue's jobs, one at a time;
* a killed worker's run becomes its next attempt, sent again and run elsewhere;
* duplicate (late), unknown and forged messages are consumed and execute nothing;
* an unreachable broker at start-up is a one-line error naming ``dispatch``;
* the seed's TestSQSRestart, and the same for Redis: the broker is crashed with jobs
  pending (some running, some due while it is down) and comes back EMPTY; every job
  still runs, none twice — the relay rebuilds the queue from the store.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from chronoq.adapters.queue import run_queue
from chronoq.ports.runqueue import RunQueue
from tests.chaos import conftest as chaos_fixtures
from tests.chaos.conftest import Chaos
from tests.chaos.harness import SETTLE, Accepted, hold
from tests.support.processes import chronoq_argv, clean_env
from tests.support.times import at, utcnow
from tests.support.waiting import wait_for

from . import test_queue_dispatch_brokers as broker_fixtures
from .test_queue_dispatch_brokers import Broker

# The fixtures these tests use (pytest finds fixtures by module attribute).
chaos, pg, pg_template = chaos_fixtures.chaos, chaos_fixtures.pg, chaos_fixtures.pg_template
broker, redis_factory = broker_fixtures.broker, broker_fixtures.redis_factory
sqs_factory = broker_fixtures.sqs_factory

pytestmark = [pytest.mark.slow]

T = TypeVar("T")
ROLES = {"api": 1, "coordinator": 1, "picker": 1, "worker": 2}


def start_cluster(chaos: Chaos, broker: Broker) -> None:
    chaos.cluster(extra=("--dispatch", broker.url), **ROLES)


def executions_per_fire(chaos: Chaos) -> Counter[tuple[str, object]]:
    return Counter((e.job_id, e.scheduled_for) for e in chaos.ledger.read())


def assert_each_ran_once(chaos: Chaos, jobs: list[Accepted]) -> None:
    per_fire = executions_per_fire(chaos)
    twice = {k: n for k, n in per_fire.items() if n > 1}
    assert not twice, f"fires executed more than once: {twice}"
    ran = {job_id for job_id, _ in per_fire}
    missing = [j.job_id for j in jobs if j.job_id not in ran]
    assert not missing, f"jobs that never ran: {missing}\n{chaos.sup.log_tails()}"


def submit(chaos: Chaos, **spec: object) -> Accepted:
    accepted = chaos.api.submit(**spec)
    assert accepted is not None, chaos.sup.log_tails()
    return accepted


def test_immediate_scheduled_and_recurring_jobs_run_once_each(chaos: Chaos, broker: Broker) -> None:
    start_cluster(chaos, broker)
    immediate = [submit(chaos, payload=chaos.ledger.probe(0.1)) for _ in range(5)]
    scheduled = [
        submit(chaos, payload=chaos.ledger.probe(0.1), next_fire_at=at(1.5 + 0.5 * i))
        for i in range(5)
    ]
    recurring = submit(chaos, payload=chaos.ledger.probe(0), cron_schedule="@every 1s")
    hold(6)  # the recurring job fires a few times
    cutoff = utcnow()
    hold(1)

    report = chaos.settle_and_check(cutoff, timeout=45)
    assert report.ok, str(report)
    assert_each_ran_once(chaos, [*immediate, *scheduled, recurring])
    fires = [k for k in executions_per_fire(chaos) if k[0] == recurring.job_id]
    assert len(fires) >= 4, fires


def test_a_burst_of_jobs_runs_once_each(chaos: Chaos, broker: Broker) -> None:
    """Many runs in flight at once: batches of messages, claims by id in batches."""
    start_cluster(chaos, broker)
    specs: list[dict[str, Any]] = [{"payload": chaos.ledger.probe(0)} for _ in range(100)]
    jobs = chaos.api.submit_batch(specs)
    assert len(jobs) == len(specs), chaos.book.summary()
    assert wait_for(lambda: len(chaos.ledger.read()) >= len(jobs), 60), (
        f"{len(chaos.ledger.read())} of {len(jobs)} ran\n" + chaos.sup.log_tails()
    )
    report = chaos.settle_and_check(utcnow(), timeout=30)
    assert report.ok, str(report)
    assert_each_ran_once(chaos, jobs)


def test_workers_serve_only_their_queues_and_a_queue_limit_holds(
    chaos: Chaos, broker: Broker
) -> None:
    """Queues through the broker: a worker of queue ``fast`` limited to one run at a time
    runs the fast jobs one after the other and never a ``slow`` one; a worker of ``slow``
    started later runs that one. Every run once (I1-I7)."""
    dispatch = ("--dispatch", broker.url)
    chaos.sup.add_cluster(dispatch, api=1, coordinator=1, picker=1)
    limited = (*dispatch, "--queues", "fast", "--queue-limit", "fast=1")
    chaos.sup.add("worker-fast", "worker", extra=limited)
    chaos.sup.start()
    chaos.sup.wait_cluster()
    fast = [submit(chaos, payload=chaos.ledger.probe(0.5), queue="fast") for _ in range(3)]
    slow = submit(chaos, payload=chaos.ledger.probe(0), queue="slow", priority=9)
    fast_ids = {j.job_id for j in fast}

    def fast_started() -> list[Any]:
        return sorted(e.started for e in chaos.ledger.read() if e.job_id in fast_ids)

    assert wait_for(lambda: len(fast_started()) == 3, 30), chaos.sup.log_tails()
    starts = fast_started()
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.45, f"two fast runs at once under fast=1: {gaps}"
    assert chaos.executions(slow.job_id) == []
    assert [r[1] for r in chaos.runs(slow.job_id)] == ["QUEUED"]  # no worker of its queue

    chaos.sup.add("worker-slow", "worker", extra=(*dispatch, "--queues", "slow"))
    chaos.sup.start("worker-slow")
    assert wait_for(lambda: chaos.executions(slow.job_id) != [], 30), chaos.sup.log_tails()
    report = chaos.settle_and_check(utcnow(), timeout=30)
    assert report.ok, str(report)
    assert_each_ran_once(chaos, [*fast, slow])


def broker_call(url: str, call: Callable[[RunQueue], Awaitable[T]]) -> T:
    """One call on the broker's RunQueue from the test process (a private client)."""

    async def run() -> T:
        queue: RunQueue = run_queue(url)
        await queue.start()
        try:
            return await call(queue)
        finally:
            await queue.close()

    return asyncio.run(run())


def test_duplicate_stale_and_forged_messages_execute_nothing(chaos: Chaos, broker: Broker) -> None:
    """At-least-once delivery, end to end: messages naming finished runs (a duplicate
    delivered late), unknown runs and garbage are consumed and acknowledged; nothing
    executes again (RELIABILITY S2: a forged queue message never executes)."""
    start_cluster(chaos, broker)
    jobs = [submit(chaos, payload=chaos.ledger.probe(0)) for _ in range(4)]
    assert wait_for(lambda: len(chaos.ledger.read()) == len(jobs), 30), chaos.sup.log_tails()
    report = chaos.settle_and_check(utcnow(), timeout=30)
    assert report.ok, str(report)
    finished = [str(r[0]) for r in chaos.db.fetch("SELECT run_id FROM job_runs")]
    assert len(finished) == len(jobs)
    forged = [str(uuid.uuid4()), "not-a-run", "'; DROP TABLE job_runs; --"]

    broker_call(broker.url, lambda q: q.send([*finished, *finished, *forged]))

    assert wait_for(lambda: broker_call(broker.url, lambda q: q.depth()) == 0, 30), (
        "the workers consume and acknowledge every message\n" + chaos.sup.log_tails()
    )
    assert len(chaos.ledger.read()) == len(jobs)  # nothing executed again
    statuses = {r[0] for r in chaos.db.fetch("SELECT status FROM job_runs")}
    assert statuses == {"COMPLETED"}
    assert chaos.db.fetchval("SELECT count(*) FROM job_runs") == len(jobs)


def test_a_killed_workers_run_becomes_its_next_attempt_elsewhere(
    chaos: Chaos, broker: Broker
) -> None:
    """Redelivery maps onto attempts through the store: the dead worker's run is reaped
    (INTERRUPTED), its next attempt is a new QUEUED run that the relay sends, and the
    other worker runs it; the dead worker's message, back after its hold, runs nothing."""
    start_cluster(chaos, broker)
    job = submit(chaos, payload=chaos.ledger.probe(3.0))
    assert wait_for(lambda: len(chaos.executions(job.job_id)) == 1, 30), chaos.sup.log_tails()
    holder = chaos.db.fetchval(
        "SELECT worker_id FROM job_runs WHERE job_id = $1::uuid AND status = 'RUNNING'",
        job.job_id,
    )
    chaos.sup.kill(str(holder).partition("#")[0])

    def ended() -> bool:
        return any(r["status"] == "COMPLETED" for r in chaos.runs(job.job_id))

    assert wait_for(ended, 40), chaos.sup.log_tails()
    runs = chaos.runs(job.job_id)
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "INTERRUPTED"), (2, "COMPLETED")]
    assert runs[1]["worker_id"] != holder
    assert sorted(e.attempt for e in chaos.executions(job.job_id)) == [1, 2]


def test_broker_restarted_empty_with_jobs_pending_runs_all_once(
    chaos: Chaos, broker: Broker
) -> None:
    """The seed's TestSQSRestart (and the same for Redis)."""
    start_cluster(chaos, broker)
    running = [submit(chaos, payload=chaos.ledger.probe(3.0)) for _ in range(3)]
    hold(1)  # these hold messages in hand while the broker dies
    pending = [
        submit(chaos, payload=chaos.ledger.probe(0.1), next_fire_at=at(1.5 + 0.2 * i))
        for i in range(10)
    ]  # fired (and their runs created) while the broker is down
    broker.crash()
    chaos.sup.note("kill", broker.kind, "broker")
    hold(4)
    broker.restart()
    restarted = utcnow()
    chaos.sup.note("start", broker.kind, "broker")
    later = [submit(chaos, payload=chaos.ledger.probe(0.1)) for _ in range(3)]
    cutoff = utcnow()
    hold(SETTLE / 2)

    report = chaos.settle_and_check(cutoff, timeout=60)
    assert report.ok, str(report)
    assert_each_ran_once(chaos, [*running, *pending, *later])
    # Dispatch really goes through the broker: nothing due while it was down started
    # before it was back.
    ids = {j.job_id for j in pending}
    early = [e for e in chaos.ledger.read() if e.job_id in ids and e.started < restarted]
    assert not early, early


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:1/0", "chronoq: dispatch: Redis at 127.0.0.1:1 is unavailable"),
        ("sqs://q?endpoint=http://127.0.0.1:1&region=us-east-1",
         "chronoq: dispatch: SQS at http://127.0.0.1:1 is unavailable"),
    ],
)  # fmt: skip
def test_an_unreachable_broker_is_a_one_line_error_at_start(
    chaos: Chaos, url: str, expected: str
) -> None:
    done = subprocess.run(
        chronoq_argv("worker", "--store", chaos.sup.dsn, "--dispatch", url),
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("chronoq:")]
    assert len(errors) == 1 and errors[0].startswith(expected), done.stderr
