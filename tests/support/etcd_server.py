"""A private etcd for tests: ``etcd_server`` (one per module), or ``running_etcd`` anywhere.

Import the fixture into a test module (``from tests.support.etcd_server import
etcd_server``). The server runs on free loopback ports with its data dir in a temp
folder and is killed in a finalizer, whatever the test did to it. Without the
``etcd`` binary the tests that need it are skipped (failed under ``CI``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronoq.runtime.servers.etcd import EtcdServer


def require_etcd() -> None:
    if shutil.which("etcd") is None:
        reason = "etcd not installed (apt-get install etcd-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set: etcd tests must run")
        pytest.skip(reason)


@contextlib.contextmanager
def running_etcd(folder: Path, **kwargs: object) -> Iterator[EtcdServer]:
    """A started ``EtcdServer`` in ``folder`` (``--unsafe-no-fsync`` unless ``fast=False``);
    killed afterwards."""
    require_etcd()
    kwargs.setdefault("fast", True)  # --unsafe-no-fsync: tests only
    server = EtcdServer(folder, **kwargs)  # type: ignore[arg-type]
    try:
        server.start(timeout=30)
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with running_etcd(tmp_path_factory.mktemp("etcd")) as server:
        yield server
