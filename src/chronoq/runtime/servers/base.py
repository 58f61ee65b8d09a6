"""``LocalServer``: a server process in a folder, on free loopback ports, stopped for sure.

A subclass says how to start it (``argv``), how to tell it is ready (``ready``) and
which package provides it (``package``, for the one-line error when it is missing).
The process runs in a session of its own, so ``stop``/``kill`` reach everything it
started; its output goes to ``<folder>/<name>.log``. ``kill()`` then ``start()``
again is a crash and a restart on the same ports and data (chaos tests).
"""

from __future__ import annotations

import contextlib
import os
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

    # -- for subclasses --------------------------------------------------------------------

    def argv(self, program: str) -> Sequence[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the server answers (called every 50 ms until ``start``'s timeout)."""
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        """The server's environment (None = this process's)."""
        return None

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
        argv = list(self.argv(self.program()))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=self.env(), cwd=self.folder, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(f"{self.name} exited at start (status"
                                  f" {self.process.returncode}); see {self.log_path}")  # fmt: skip
            if self.ready():
                return
            time.sleep(0.05)
        self.kill()
        raise ConfigError(f"{self.name} was not ready after {timeout:.0f}s; see {self.log_path}")

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
