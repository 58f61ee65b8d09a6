"""A private etcd (Debian ``etcd-server``, 3.4) on free loopback ports, data in a folder.

One member (``EtcdServer(folder)``) or a cluster (``etcd_cluster(folder, 3)``): every
member listens for clients and peers on its own free loopback ports. ``fast=True``
adds ``--unsafe-no-fsync`` (tests only: a crash may lose acknowledged writes).
``kill()`` then ``start()`` is a crash and a restart on the same ports and data dir.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

from chronoq.runtime.servers.base import HOST, LocalServer, free_port, tcp_open


class EtcdServer(LocalServer):
    name = "etcd"
    executable = "etcd"
    package = "apt-get install etcd-server"

    def __init__(
        self, folder: Path, *, member: str = "default", client_port: int | None = None,
        peer_port: int | None = None, cluster: dict[str, str] | None = None, fast: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(folder)
        self.name = f"etcd-{member}" if cluster else "etcd"
        self.member = member
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.cluster = cluster or {member: self.peer_url}
        """member name -> peer URL of every member of the initial cluster."""
        self.fast = fast
        self.chosen_ports = cluster is not None or client_port is not None or peer_port is not None

    def repick_ports(self) -> bool:
        if self.chosen_ports:
            return False  # a cluster's members name each other's peer ports
        self.client_port, self.peer_port = free_port(), free_port()
        self.cluster = {self.member: self.peer_url}
        # A member folder records its peer URL; this one never started, so none to keep.
        shutil.rmtree(self.folder / "data", ignore_errors=True)
        return True

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.client_port}"

    @property
    def url(self) -> str:
        """The ``--coordination`` URL of this member alone."""
        return f"etcd://{self.endpoint}"

    def argv(self, program: str) -> Sequence[str]:
        # Every member of one cluster must be given the same token.
        initial = ",".join(f"{name}={url}" for name, url in sorted(self.cluster.items()))
        args = [
            program, "--name", self.member, "--data-dir", str(self.folder / "data"),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", f"chronoq-{zlib.crc32(initial.encode()):08x}",
        ]  # fmt: skip
        if self.fast:
            args.append("--unsafe-no-fsync")
        return args

    def ready(self) -> bool:
        """A single member: healthy (it has a leader). A cluster member: accepting clients
        (it cannot be healthy before a quorum runs: see ``etcd_cluster``)."""
        if not tcp_open(self.client_port):
            return False
        return len(self.cluster) > 1 or self.healthy()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=1) as answer:
                return bool(json.load(answer).get("health") == "true")
        except (OSError, ValueError):
            return False

    def status(self) -> dict[str, str] | None:
        """``/v3/maintenance/status`` of this member (its id and its leader's), or None."""
        request = urllib.request.Request(
            self.client_url + "/v3/maintenance/status", data=b"{}", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=1) as answer:
                body = json.load(answer)
        except (OSError, ValueError):
            return None
        # No "leader" field while an election runs (etcd omits zero values).
        return {"member_id": str(body["header"]["member_id"]), "leader": str(body.get("leader", 0))}

    def is_leader(self) -> bool:
        status = self.status()
        return status is not None and status["member_id"] == status["leader"]


def etcd_cluster(folder: Path, size: int, *, fast: bool = False) -> list[EtcdServer]:
    """``size`` members (not started) that form one cluster, each in ``folder/<name>``."""
    names = [f"m{i + 1}" for i in range(size)]
    ports = {name: (free_port(), free_port()) for name in names}
    peers = {name: f"http://{HOST}:{peer}" for name, (_, peer) in ports.items()}
    return [
        EtcdServer(
            folder / name,
            member=name,
            client_port=ports[name][0],
            peer_port=ports[name][1],
            cluster=peers,
            fast=fast,
        )
        for name in names
    ]


def cluster_url(members: Sequence[EtcdServer], prefix: str = "") -> str:
    """The ``--coordination`` URL naming every member (and a key prefix, if given)."""
    url = "etcd://" + ",".join(m.endpoint for m in members)
    return f"{url}/{prefix}" if prefix else url
