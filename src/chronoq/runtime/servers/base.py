"""``LocalServer``: a server process in a folder, on free loopback ports, stopped for sure.

A subclass says how to start it (``argv``), how to tell it is ready (``ready``) and
which package provides it (``package``, for the one-line error when it is missing).
The process runs in a session of its own, so ``stop``/``kill`` reach everything it
started; its output goes to ``<folder>/<name>.log``. ``kill()`` then ``start()``
again is a crash and a restart on the same ports and data (chaos tests).

A port picked free is free when picked, not when the server binds it: parallel tests
race for it. A first start that loses that race picks new ports (``repick_ports``) and
tries again; a restart never does, because its callers hold the endpoint.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from chronoq.errors import ConfigError

HOST = "127.0.0.1"
_PORT_RETRIES = 3
_PORT_TAKEN = re.compile(r"address already in use|port allocation failed", re.IGNORECASE)
"""How the servers we start say a port was taken (redis, etcd, moto, SeaweedFS)."""


class _ExitedAtStart(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def tcp_open(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class LocalServer:
    name = "server"
    """Short name: the log file and error messages use it."""
    executable = ""
    """The program, looked up on PATH (and next to the running Python, for pip-installed
    binaries such as SeaweedFS's ``weed``)."""
    package = ""
    """What to install when ``executable`` is missing, e.g. ``apt-get install etcd-server``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False
        """Whether it was ever ready: from then on its ports are fixed."""

    # -- for subclasses --------------------------------------------------------------------

    def argv(self, program: str) -> Sequence[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the server answers (called every 50 ms until ``start``'s timeout)."""
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        """The server's environment (None = this process's)."""
        return None

    def repick_ports(self) -> bool:
        """Choose new free ports for a retried first start; False when the caller chose
        them (they stay, and the start fails)."""
        return False

    # -- common ----------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    def program(self) -> str:
        found = shutil.which(self.executable)
        if found is None:
            beside = Path(sys.executable).parent / self.executable
            found = str(beside) if beside.exists() else None
        if found is None:
            raise ConfigError(f"{self.name} is not installed ({self.executable} not found):"
                              f" {self.package}")  # fmt: skip
        return found

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart after ``stop``/``kill``) and wait until ready."""
        if self.process is not None and self.process.poll() is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for attempt in range(_PORT_RETRIES + 1):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._spawn_and_wait(timeout)
            except _ExitedAtStart as exited:
                lost_port = _PORT_TAKEN.search(self._log_since(log_start))
                retry = not self.started and lost_port and attempt < _PORT_RETRIES
                if retry and self.repick_ports():
                    continue
                raise ConfigError(f"{self.name} exited at start (status {exited.status});"
                                  f" see {self.log_path}") from None  # fmt: skip
            self.started = True
            return

    def _spawn_and_wait(self, timeout: float) -> None:
        argv = list(self.argv(self.program()))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=self.env(), cwd=self.folder, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.process.poll()
            if status is not None:
                self.process = None
                raise _ExitedAtStart(status)
            if self.ready():
                return
            time.sleep(0.05)
        self.kill()
        raise ConfigError(f"{self.name} was not ready after {timeout:.0f}s; see {self.log_path}")

    def _log_since(self, offset: int) -> str:
        with contextlib.suppress(OSError), self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read(1 << 20).decode("utf-8", "replace")
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server's group, SIGKILL what is left after ``timeout``."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the server's group at once (a crash)."""
        self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # children that outlived the leader
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class OnePortServer(LocalServer):
    """A server on one port: the caller's, or a free one (picked again if a first start
    loses it to another process)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__(folder)
        self.port = port or free_port()
        self._chosen_port = port is not None

    def repick_ports(self) -> bool:
        if self._chosen_port:
            return False
        self.port = free_port()
        return True
