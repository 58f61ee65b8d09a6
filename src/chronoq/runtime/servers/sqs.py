"""A private SQS-compatible server (moto's ``moto_server``) on a free loopback port.

moto keeps everything in memory: ``kill()`` then ``start()`` on the same port is a
broker that comes back EMPTY, without its queues (the seed's TestSQSRestart). The SQS
adapter creates its queues again when it meets ``NonExistentQueue``. moto's cost grows
with queue depth, so tests keep their queues small.
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Sequence
from pathlib import Path

from chronoq.runtime.servers.base import HOST, OnePortServer, tcp_open


class SqsServer(OnePortServer):
    name = "moto"
    executable = "moto_server"
    package = "pip install 'moto[server]'"

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__(folder, port)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url(self, queue: str, max_receives: int = 5) -> str:
        """The ``--dispatch`` URL of ``queue`` on this server."""
        return (f"sqs://{queue}?endpoint={self.endpoint}&region=us-east-1"
                f"&max_receives={max_receives}")  # fmt: skip

    def argv(self, program: str) -> Sequence[str]:
        return [program, "-H", HOST, "-p", str(self.port)]

    def env(self) -> dict[str, str]:
        # moto never calls out; keep its own boto3 off instance metadata all the same.
        return {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}

    def ready(self) -> bool:
        if not tcp_open(self.port):
            return False
        connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
        try:
            connection.request("GET", "/moto-api/")
            return connection.getresponse().status < 500
        except OSError:
            return False
        finally:
            connection.close()
