"""A private PostgreSQL server in a folder, for ``chronoq cluster up`` and the tests.

Uses the machine's PostgreSQL binaries (Debian: /usr/lib/postgresql/<v>/bin).
PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user (the folder is handed to it). Listens on loopback only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from chronoq.errors import ConfigError


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``, or None if PostgreSQL is not installed."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    return next((c for c in candidates if (c / "postgres").exists()), None)


def _traversable(folder: Path) -> bool:
    """Whether every existing ancestor of ``folder`` lets other users through."""
    for part in [folder, *folder.parents]:
        if part.exists() and not part.stat().st_mode & 0o001:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivatePostgres:
    """``start()`` initialises the folder if needed and starts the server; ``stop()`` stops it."""

    def __init__(self, folder: Path, port: int | None = None, *, fast: bool = False) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise ConfigError("PostgreSQL binaries not found: install postgresql or pass --store")
        self.bindir = bindir
        self.folder = folder.resolve()
        self.data = self.folder / "pgdata"
        if os.geteuid() == 0 and not _traversable(self.folder):
            # The postgres user cannot reach a folder under a private parent (e.g. pytest's
            # /tmp/pytest-of-root): keep the cluster in a world-traversable temp dir instead.
            self.data = Path(tempfile.mkdtemp(prefix="chronoq-pg-")) / "pgdata"
        self.ephemeral = self.data.parent != self.folder
        self.port = port or free_port()
        self.fast = fast
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data.parent, "postgres", "postgres")
            shutil.chown(self.data, "postgres", "postgres")
        subprocess.run(
            [*self._as_owner(), str(self.bindir / "initdb"), "-D", str(self.data), "-U",
             "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def start(self, timeout: float = 30.0) -> None:
        self.init()
        args = [
            *self._as_owner(), str(self.bindir / "postgres"), "-D", str(self.data),
            "-p", str(self.port), "-k", str(self.data), "-c", "listen_addresses=127.0.0.1",
            "-c", "max_connections=300",
        ]  # fmt: skip
        if self.fast:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        log = open(self.folder / "postgres.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ConfigError(f"postgres exited early; see {self.folder / 'postgres.log'}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", "postgres"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise ConfigError(f"postgres did not become ready in {timeout:.0f}s")

    def destroy(self) -> None:
        """Stop, and delete the data when it lives outside ``folder`` (a temp dir)."""
        self.stop()
        if self.ephemeral:
            shutil.rmtree(self.data.parent, ignore_errors=True)

    def stop(self, *, immediate: bool = False, timeout: float = 30.0) -> None:
        """Stop: ``immediate`` is a crash (no checkpoint); otherwise a fast clean shutdown."""
        if self.process is None:
            return
        sig = signal.SIGQUIT if immediate else signal.SIGINT
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
