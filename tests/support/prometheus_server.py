"""``prometheus_factory``: private Prometheus servers (Debian's ``prometheus``) for a test,
each scraping the targets it is given, all stopped in the finalizer. Skips the test when
the package is not installed (outside CI)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from chronoq.runtime.servers.prometheus import PrometheusServer

PrometheusFactory = Callable[[Mapping[str, Sequence[str]]], PrometheusServer]


def prometheus_installed() -> bool:
    return shutil.which(PrometheusServer.executable) is not None


def require_prometheus() -> None:
    if not prometheus_installed() and not os.environ.get("CI"):
        pytest.skip("prometheus is not installed (apt-get install prometheus)")


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[PrometheusFactory]:
    require_prometheus()
    servers: list[PrometheusServer] = []

    def start(targets: Mapping[str, Sequence[str]]) -> PrometheusServer:
        server = PrometheusServer(tmp_path / f"prometheus-{len(servers)}", targets)
        servers.append(server)
        server.start(timeout=30)
        return server

    yield start
    for server in servers:
        server.stop()
