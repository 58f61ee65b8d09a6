"""The seed's two chaos tests on the seed-shaped stack (issue 8.8): every role process runs
over PostgreSQL with S3 payloads (SeaweedFS), submissions through a Redis Streams log and
a writer (the seed's Kafka path), runs through SQS (moto) and leadership on etcd.

* seed chaos 1: a fire due while no picker lives does not run; after the picker's
  restart it runs exactly once;
* seed chaos 2: the worker is SIGKILLed mid-job; after its restart attempt 2 completes,
  and the ledger shows exactly attempts 1 and 2.

Probe payloads are padded past 1 KiB, so each one is offloaded to S3 and fetched back by
the worker. I1–I7 hold after each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chronoq.runtime.servers.etcd import EtcdServer, cluster_url
from chronoq.runtime.servers.redis import RedisServer
from chronoq.runtime.servers.s3 import SeaweedS3Server
from chronoq.runtime.servers.sqs import SqsServer
from tests.support.etcd_server import require_etcd
from tests.support.s3_server import aws_env_fixture, s3_factory_fixture, s3_url  # noqa: F401
from tests.support.times import at, utcnow
from tests.support.waiting import wait_for

from .conftest import Chaos
from .etcd_world import PREFIX, etcd_chaos
from .harness import LEASE, LOOKAHEAD, REAP_INTERVAL, ChaosPostgres, hold

pytestmark = pytest.mark.chaos

PADDING = 1200


def big(probe: str) -> str:
    """A probe payload over 1 KiB (offloaded to S3); the tail is a shell no-op."""
    return probe + "; : " + "x" * PADDING


@pytest.fixture
def stack(
    request: pytest.FixtureRequest,
    pg: ChaosPostgres,
    pg_template: str,
    tmp_path: Path,
    s3_factory: Callable[[], SeaweedS3Server],
    aws_env: dict[str, str],
) -> Iterator[Chaos]:
    """The chaos world on the seed's stack: a cluster of one api, writer, coordinator,
    picker and worker, started and settled."""
    require_etcd()
    etcd = EtcdServer(tmp_path / "etcd", fast=True)
    redis = RedisServer(tmp_path / "redis")  # AOF: the submission log must survive
    sqs = SqsServer(tmp_path / "sqs")
    s3 = s3_factory()
    redis.start()
    sqs.start()
    try:
        with etcd_chaos(request, pg, pg_template, tmp_path, [etcd]) as chaos:
            extra = (
                "--coordination", cluster_url([etcd], PREFIX), "--blob", s3_url(s3),
                "--ingest", redis.url, "--dispatch", sqs.url("chaos-runs"),
            )  # fmt: skip
            chaos.sup.add_cluster(extra, coordinator=1, api=1, picker=1, worker=1)
            chaos.sup.add("writer-1", "writer", extra=extra)
            chaos.sup.start()
            chaos.sup.wait_cluster()
            yield chaos
    finally:
        sqs.stop()
        redis.stop()


@pytest.mark.chaos(seed=91)
def test_seed_chaos_1_on_the_stack_no_picker_no_fire_then_exactly_one(stack: Chaos) -> None:
    chaos = stack
    job = chaos.api.submit(payload=big(chaos.ledger.probe(0.2)), next_fire_at=at(6.0))
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


@pytest.mark.chaos(seed=92)
def test_seed_chaos_2_on_the_stack_worker_killed_mid_job(stack: Chaos) -> None:
    chaos = stack
    job = chaos.api.submit(payload=big(chaos.ledger.probe(8.0)))
    assert job is not None, chaos.book.summary()
    assert wait_for(lambda: chaos.executions(job.job_id), 20), chaos.runs(job.job_id)
    hold(1.0)  # mid-job
    chaos.sup.kill("worker-1")
    chaos.sup.start("worker-1")

    def completed() -> bool:
        return any(r["status"] == "COMPLETED" for r in chaos.runs(job.job_id))

    assert wait_for(completed, LEASE + REAP_INTERVAL + 8.0 + 15.0, interval=0.2), chaos.runs(
        job.job_id
    )
    runs = chaos.runs(job.job_id)
    assert [(r["attempt"], r["status"]) for r in runs] == [
        (1, "INTERRUPTED"),
        (2, "COMPLETED"),
    ], runs
    assert sorted(e.attempt for e in chaos.executions(job.job_id)) == [1, 2]
    report = chaos.settle_and_check(utcnow())
    assert report.ok, report
    assert report.stats["duplicates_after_kill"] == 1, report
