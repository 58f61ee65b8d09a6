"""moto's SQS server for the tests: one per session, private ones on demand.

* ``sqs_server`` (session): a shared ``SqsServer``; stopped in a finalizer.
* ``sqs_factory`` (function): private servers a test may kill and restart (moto comes
  back empty); every one is stopped at the end.
* ``sqs_url(server, max_receives=…)``: a fresh queue name per call, so tests never share
  messages (and queues stay small: moto slows down with depth).

No credentials are needed: with an endpoint and none configured, the adapter signs with
dummy ones. Skips when moto_server is not installed, except under ``CI``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chronoq.errors import ConfigError
from chronoq.runtime.servers.sqs import SqsServer


def require_moto(server: SqsServer) -> None:
    try:
        server.program()
    except ConfigError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


def sqs_url(server: SqsServer, max_receives: int = 5) -> str:
    return server.url(f"t-{uuid.uuid4().hex[:20]}", max_receives)


@pytest.fixture(scope="session")
def sqs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqsServer]:
    server = SqsServer(tmp_path_factory.mktemp("moto"))
    require_moto(server)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def sqs_factory(tmp_path: Path) -> Iterator[Callable[[], SqsServer]]:
    servers: list[SqsServer] = []

    def make() -> SqsServer:
        server = SqsServer(tmp_path / f"moto-{len(servers)}")
        require_moto(server)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
