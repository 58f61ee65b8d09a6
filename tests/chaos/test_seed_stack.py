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

from .conftest import Chaos
from .etcd_world import PREFIX, etcd_chaos
from .harness import ChaosPostgres
from .seed_scenarios import (
    no_picker_no_fire_then_exactly_one,
    worker_killed_mid_job_completes_as_attempt_2,
)

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
    no_picker_no_fire_then_exactly_one(stack, big, due_in=6.0)


@pytest.mark.chaos(seed=92)
def test_seed_chaos_2_on_the_stack_worker_killed_mid_job(stack: Chaos) -> None:
    worker_killed_mid_job_completes_as_attempt_2(stack, big, slack=15.0)
