"""The brokers behind ``--dispatch`` for the queued-dispatch tests (no tests here).

``broker`` (parametrised ``redis`` / ``sqs``): a private broker of this test that it may
crash and bring back EMPTY on the same address — a non-durable ``redis-server`` (no AOF,
no snapshots), or moto's SQS server (memory only). Stopped in the fixtures' finalizers
(``tests.support.redis_server``, ``tests.support.sqs_server``). Imported by
tests/integration/test_queue_dispatch.py and tests/chaos/test_r6_broker_restart.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from chronoq.runtime.servers.base import LocalServer
from chronoq.runtime.servers.redis import RedisServer
from chronoq.runtime.servers.sqs import SqsServer
from tests.support import redis_server, sqs_server

# The fixtures ``broker`` uses (pytest finds fixtures by module attribute).
redis_factory = redis_server.redis_factory
sqs_factory = sqs_server.sqs_factory


@dataclass(slots=True)
class Broker:
    kind: str
    server: LocalServer
    url: str
    """The ``--dispatch`` URL."""

    def crash(self) -> None:
        """SIGKILL the broker: everything it held is gone (nothing is on disk)."""
        self.server.kill()

    def restart(self) -> None:
        """Start it again, empty, on the same port."""
        self.server.start(timeout=30)

    def flush(self) -> None:
        """Crash and restart at once: a broker that comes back empty."""
        self.crash()
        self.restart()


@pytest.fixture(params=["redis", "sqs"])
def broker(request: pytest.FixtureRequest) -> Broker:
    if request.param == "redis":
        make_redis: Callable[..., RedisServer] = request.getfixturevalue("redis_factory")
        server = make_redis(durable=False)
        return Broker("redis", server, server.url)
    make_sqs: Callable[[], SqsServer] = request.getfixturevalue("sqs_factory")
    sqs = make_sqs()
    return Broker("sqs", sqs, sqs_server.sqs_url(sqs))
