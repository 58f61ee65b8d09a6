"""Start ``chronoq up`` (or the trivial echo server) as a subprocess, and stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.httpclient import Client, HttpError

_STOP_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where the scenarios send traffic, and whose CPU they measure (pid may be unknown)."""

    host: str
    port: int
    pid: int | None
    log_path: Path | None = None
    argv: tuple[str, ...] = ()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def parse_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http://host:port URLs are supported, got {url!r}")
    return parts.hostname, parts.port or 80


def server_help(python: str) -> str:
    """``chronoq up --help`` text ('' if it fails), to learn which options exist."""
    result = subprocess.run(
        [python, "-m", "chronoq", "up", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout if result.returncode == 0 else ""


def _spawn(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches its children
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it after a grace period."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_STOP_GRACE_S)
    # Children may outlive the leader; make sure the whole group is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_STOP_GRACE_S)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def wait_ready(
    host: str, port: int, proc: subprocess.Popen[bytes] | None, timeout_s: float, path: str
) -> None:
    """Poll ``path`` until it answers 200."""
    deadline = time.monotonic() + timeout_s
    client = Client(host, port)
    try:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode}")
            try:
                if 200 <= (await client.call("GET", path)).status < 300:
                    return
            except (OSError, HttpError):
                pass
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    raise RuntimeError(f"server not ready on {host}:{port} after {timeout_s:.0f}s")


@contextlib.asynccontextmanager
async def chronoq_server(
    python: str, extra_args: Sequence[str], *, keep_data: bool = False, ready_timeout_s: float = 60
) -> AsyncIterator[Target]:
    """A fresh ``chronoq up`` on a free loopback port and a fresh temp data dir."""
    host = "127.0.0.1"
    port = free_port(host)
    data_dir = Path(tempfile.mkdtemp(prefix="chronoq-bench-"))
    log_path = data_dir.parent / f"{data_dir.name}.log"
    argv = [python, "-m", "chronoq", "up", "--host", host, "--port", str(port)]
    argv += ["--data-dir", str(data_dir / "data"), *extra_args]
    proc = _spawn(argv, log_path)
    failed = True
    try:
        try:
            await wait_ready(host, port, proc, ready_timeout_s, "/health")
        except RuntimeError as exc:
            raise RuntimeError(
                f"{exc}\n--- server log ({log_path}) ---\n{_log_tail(log_path)}"
            ) from exc
        yield Target(host=host, port=port, pid=proc.pid, log_path=log_path, argv=tuple(argv))
        failed = False
    finally:
        _stop(proc)
        if not keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
            if not failed:  # keep the log of a failed run for a post-mortem
                log_path.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def echo_server(cpu_list: str | None = None) -> AsyncIterator[Target]:
    """The trivial canned-response server (``bench.echo_server``), to measure the client."""
    host = "127.0.0.1"
    port = free_port(host)
    log_path = Path(tempfile.gettempdir()) / f"chronoq-bench-echo-{port}.log"
    argv = [sys.executable, "-m", "bench.echo_server", "--host", host, "--port", str(port)]
    if cpu_list and shutil.which("taskset"):
        argv = ["taskset", "-c", cpu_list, *argv]
    proc = _spawn(argv, log_path)
    try:
        await wait_ready(host, port, proc, 30, "/health")
        yield Target(host=host, port=port, pid=proc.pid, log_path=log_path, argv=tuple(argv))
    finally:
        _stop(proc)
        with contextlib.suppress(OSError):
            log_path.unlink()
