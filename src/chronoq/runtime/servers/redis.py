"""A private ``redis-server`` on a free loopback port, with its data in a folder.

``appendonly`` (AOF) is on by default with ``appendfsync always``: an entry XADDed
before a crash is there after the restart. That is what the buffered submission log
needs (docs/backends/redis.md); the dispatch queue survives without it (it is
rebuilt from the store). Tests that only need speed pass ``durable=False``.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

from chronoq.runtime.servers.base import HOST, OnePortServer, tcp_open


class RedisServer(OnePortServer):
    name = "redis"
    executable = "redis-server"
    package = "apt-get install redis-server"

    def __init__(self, folder: Path, port: int | None = None, *, durable: bool = True) -> None:
        super().__init__(folder, port)
        self.durable = durable

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def argv(self, program: str) -> Sequence[str]:
        args = [program, "--port", str(self.port), "--bind", HOST, "--dir", str(self.folder),
                "--save", "", "--protected-mode", "yes", "--daemonize", "no"]  # fmt: skip
        if self.durable:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args

    def ready(self) -> bool:
        if not tcp_open(self.port):
            return False
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:  # not up yet, or someone else's listener that never answers
            return False
