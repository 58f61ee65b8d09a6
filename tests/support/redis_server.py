"""Private ``redis-server`` processes for a test (``chronoq.runtime.servers.redis``).

``redis_server``: one durable server (AOF, ``appendfsync always``) for the test, stopped
in the finalizer. ``redis_factory(durable=...)``: as many as a test needs, all stopped
afterwards. Each server's ``kill()`` then ``start()`` is a crash and a restart on the
same port and data. Skips when redis-server is not installed, except under ``CI``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chronoq.runtime.servers.redis import RedisServer

RedisFactory = Callable[..., RedisServer]


def require_redis() -> None:
    if shutil.which(RedisServer.executable) is None and not os.environ.get("CI"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[RedisFactory]:
    require_redis()
    servers: list[RedisServer] = []

    def start(*, durable: bool = True) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", durable=durable)
        servers.append(server)
        server.start(timeout=30)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.kill()  # its data folder goes with tmp_path


@pytest.fixture
def redis_server(redis_factory: RedisFactory) -> RedisServer:
    return redis_factory()
