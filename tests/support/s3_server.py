"""SeaweedFS for the tests: one S3 server per test session, private ones on demand.

* ``s3_server`` (session): a ``SeaweedS3Server`` that enforces the test credentials
  ``S3_ENV`` (so requests really are signed); stopped in a finalizer.
* ``aws_env`` (function): puts ``S3_ENV`` in this process's environment — where the
  adapter's AWS credential chain finds them — and points the AWS config files at
  nothing, so the machine's own ~/.aws never leaks into a test.
* ``s3_factory`` (function): private servers a test may stop, kill and restart; every
  one is stopped at the end.
* Import the fixtures by their function names (``s3_server_fixture``...); pytest knows
  them by the short names.
* ``s3_url(server, **options)``: a fresh bucket per call, so tests never share objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chronoq.runtime.servers.s3 import SeaweedS3Server

ACCESS_KEY = "chronoq-test-key"
SECRET_KEY = "chronoq-test-secret-0123456789"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_CONFIG_FILE": "/nonexistent/chronoq-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/chronoq-aws-credentials",
}
"""The environment a client (this process or a ``chronoq up``) needs for ``s3_server``."""


def new_server(folder: Path) -> SeaweedS3Server:
    return SeaweedS3Server(folder, access_key=ACCESS_KEY, secret_key=SECRET_KEY)


def s3_url(server: SeaweedS3Server, prefix: str = "chronoq", **options: str) -> str:
    return server.url(f"t-{uuid.uuid4().hex[:20]}", prefix, **options)


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3Server]:
    server = new_server(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(name="aws_env")
def aws_env_fixture(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    return dict(S3_ENV)


@pytest.fixture(name="s3_factory")
def s3_factory_fixture(tmp_path: Path) -> Iterator[Callable[[], SeaweedS3Server]]:
    servers: list[SeaweedS3Server] = []

    def make() -> SeaweedS3Server:
        server = new_server(tmp_path / f"seaweedfs-{len(servers)}")
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
