"""End-to-end harness: real ``chronoq up`` subprocesses on free loopback ports.

* ``ServerHandle`` starts one server in its own session (process group), waits
  for ``GET /health`` with a deadline, and can ``stop`` (SIGTERM), ``kill``
  (SIGKILL) and ``restart`` it on the same port and data directory. Its stdout
  and stderr go to ``handle.log``; the tail is attached to every failing test's
  report while the server is alive.
* ``server_factory`` (per test) and ``module_server_factory`` (per module)
  start servers with extra arguments / environment and tear every one down at
  the end: SIGTERM, then SIGKILL of everything left in each session it ever
  started. Processes a job started in a session of its own are found by the
  tests themselves (``proc_sweeper``: unique tokens in their command lines).
* ``server`` is a default server shared by the tests of one module; ``api`` an
  ``httpx.Client`` on it acting as ``alice``.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from tests.support.processes import (
    HOST,
    chronoq_argv,
    clean_env,
    free_port,
    kill_pids,
    log_tail,
    pids_with_token,
    session_pids,
    signal_group,
    spawn,
)
from tests.support.waiting import wait_for

from .helpers import Guard, make_client

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 80

_LIVE: set[ServerHandle] = set()
"""Servers not yet disposed of; their log tails go into failing tests' reports."""


class ServerStartError(AssertionError):
    pass


class ServerHandle:
    """One ``chronoq up`` subprocess (re)startable on a fixed port and data dir."""

    def __init__(
        self,
        base_dir: Path,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        name: str = "server",
    ) -> None:
        self.name = name
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = base_dir / "server.log"
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.sessions: list[int] = []
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return chronoq_argv(
            "up", "--host", HOST, "--port", str(self.port), "--data-dir", str(self.data_dir),
            *self.args,
        )  # fmt: skip

    def start(self, timeout: float = START_TIMEOUT) -> ServerHandle:
        assert not self.running, f"{self.name} is already running"
        self.starts += 1
        command = self.command()
        self.proc = spawn(
            command, self.log, env=clean_env(self.extra_env), cwd=self.base_dir,
            header=f"start #{self.starts}: {' '.join(command)}",
        )  # fmt: skip
        self.sessions.append(self.proc.pid)
        _LIVE.add(self)
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                return True  # exited: stop polling, reported below
            try:
                r = httpx.get(self.url + "/health", timeout=1.0)
            except httpx.HTTPError:
                return False
            return r.status_code == 200

        wait_for(healthy, timeout, interval=0.1)
        if proc.poll() is not None:
            raise ServerStartError(
                f"{self.name} exited with {proc.returncode} during start-up\n{self.log_tail()}"
            )
        try:
            r = httpx.get(self.url + "/health", timeout=2.0)
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            self._kill_sessions()
            raise ServerStartError(
                f"{self.name} not healthy within {timeout}s at {self.url}\n{self.log_tail()}"
            )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait; returns the exit code. Past ``timeout``: SIGKILL and fail."""
        assert self.proc is not None, f"{self.name} was never started"
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_sessions()
                raise AssertionError(
                    f"{self.name} did not exit within {timeout}s of SIGTERM\n{self.log_tail()}"
                ) from None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server's whole process group (kill -9), and reap it."""
        assert self.proc is not None, f"{self.name} was never started"
        signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def restart(self, timeout: float = START_TIMEOUT) -> ServerHandle:
        """Stop (gracefully) if running, then start again on the same port and data dir."""
        if self.running:
            self.stop()
        return self.start(timeout)

    def dispose(self) -> None:
        """Teardown: SIGTERM, a short grace, then SIGKILL everything in its sessions."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self._kill_sessions()
        _LIVE.discard(self)

    def _kill_sessions(self) -> None:
        for sid in self.sessions:
            signal_group(sid, signal.SIGKILL)
            kill_pids(session_pids(sid))
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log, lines)

    def client(self, user: str | None = "alice") -> httpx.Client:
        return make_client(self.url, user)

    def __repr__(self) -> str:
        return f"ServerHandle({self.name!r}, url={self.url!r}, data_dir={str(self.data_dir)!r})"


class ServerFactory:
    """Starts servers under ``root``; ``close()`` disposes of every one of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.handles: list[ServerHandle] = []

    def __call__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        start: bool = True,
        name: str | None = None,
    ) -> ServerHandle:
        name = name or f"server{len(self.handles)}"
        base = self.root / f"{name}-{uuid.uuid4().hex[:6]}"
        base.mkdir(parents=True)
        handle = ServerHandle(base, args, env, name=name)
        self.handles.append(handle)
        if start:
            handle.start()
        return handle

    def close(self) -> None:
        for handle in self.handles:
            handle.dispose()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers for one test: ``server_factory("--retry-base", "0.05", env={...})``."""
    factory = ServerFactory(tmp_path / "servers")
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Like ``server_factory``, but the servers live for the whole module."""
    factory = ServerFactory(tmp_path_factory.mktemp("servers"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> ServerHandle:
    """A default server shared by the tests of one module."""
    return module_server_factory(name="default")


@pytest.fixture
def api(server: ServerHandle) -> Iterator[httpx.Client]:
    """An ``httpx.Client`` on ``server`` acting as ``alice``."""
    with server.client("alice") as client:
        yield client


@pytest.fixture
def proc_sweeper() -> Iterator[list[str]]:
    """Append command-line tokens; processes still carrying one are SIGKILLed at teardown."""
    tokens: list[str] = []
    yield tokens
    for token in tokens:
        kill_pids(pids_with_token(token))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for handle in sorted(_LIVE, key=lambda h: h.name):
            report.sections.append((f"chronoq log: {handle.name} {handle.url}", handle.log_tail()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Last line of defence: nothing we started may outlive the test session.
    for handle in list(_LIVE):
        handle.dispose()


@pytest.fixture
def guard(server: ServerHandle) -> Iterator[Guard]:
    """A fresh user on the module's server that can prove a refused request stored nothing."""
    g = Guard(server)
    with g.client:
        yield g
