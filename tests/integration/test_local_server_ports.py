"""A server's first start survives losing its free port to another process.

``free_port`` finds a port free, then the server binds it later: a parallel test can
take it in between (CI saw SeaweedFS exit with "Port allocation failed"). Each test
takes the picked port before ``start``, which is that race lost every time.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chronoq.errors import ConfigError
from chronoq.runtime.servers import s3
from chronoq.runtime.servers.base import HOST, free_port, tcp_open
from chronoq.runtime.servers.redis import RedisServer
from chronoq.runtime.servers.s3 import SeaweedS3Server
from tests.support.redis_server import require_redis


@contextmanager
def taken(port: int) -> Iterator[None]:
    """Another process's listener on ``port``."""
    with socket.socket() as sock:
        sock.bind((HOST, port))
        sock.listen()
        yield


def test_a_first_start_picks_new_ports_when_its_port_was_taken(tmp_path: Path) -> None:
    require_redis()
    server = RedisServer(tmp_path / "redis")
    lost = server.port
    try:
        with taken(lost):
            server.start(timeout=30)
        assert server.port != lost
        assert tcp_open(server.port)
    finally:
        server.stop()


def test_a_restart_keeps_its_port_and_fails_when_it_is_taken(tmp_path: Path) -> None:
    require_redis()
    server = RedisServer(tmp_path / "redis")
    try:
        server.start(timeout=30)
        port = server.port
        server.kill()
        server.start(timeout=30)
        assert server.port == port  # the endpoint its clients hold
        server.kill()
        with taken(port), pytest.raises(ConfigError, match="exited at start"):
            server.start(timeout=30)
        assert server.port == port
    finally:
        server.stop()


def test_a_port_the_caller_chose_is_never_replaced(tmp_path: Path) -> None:
    require_redis()
    port = free_port()
    server = RedisServer(tmp_path / "redis", port)
    with taken(port), pytest.raises(ConfigError, match="exited at start"):
        server.start(timeout=30)
    assert server.port == port
    assert not server.running


@pytest.mark.parametrize("seen_taken", [True, False], ids=["before-spawn", "at-bind"])
def test_seaweedfs_retries_with_new_ports_when_its_s3_port_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seen_taken: bool
) -> None:
    """Before spawning it checks its ports; a port taken after that check is the log's
    "Port allocation failed" (the check is blinded to reach it)."""
    if not seen_taken:
        monkeypatch.setattr(s3, "_bindable", lambda port: True)
    server = SeaweedS3Server(tmp_path / "s3")
    lost = server.port
    try:
        with taken(lost):
            server.start(timeout=60)
        assert server.port != lost
        assert tcp_open(server.port)
        if not seen_taken:
            assert "Port allocation failed" in server.log_path.read_text(errors="replace")
    finally:
        server.stop()
