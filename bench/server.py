"""Start ``chronoq up`` (or the trivial echo server) as a subprocess, and stop it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.httpclient import Client, HttpError
from tests.support.processes import HOST, chronoq_argv, free_port, log_tail, spawn, stop_group
from tests.support.waiting import poll

_STOP_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A server process the load goes to, and whose CPU is measured (pid may be unknown)."""

    host: str
    port: int
    pid: int | None
    log_path: Path | None = None
    argv: tuple[str, ...] = ()


def parse_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http://host:port URLs are supported, got {url!r}")
    return parts.hostname, parts.port or 80


def server_help(python: str) -> str:
    """``chronoq up --help`` text ('' if it fails), to learn which options exist."""
    result = subprocess.run(
        chronoq_argv("up", "--help", python=python),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout if result.returncode == 0 else ""


async def healthy(host: str, port: int, timeout_s: float, path: str = "/health") -> bool:
    """Poll ``path`` until it answers 2xx; whether it did within ``timeout_s``."""
    client = Client(host, port)

    async def ok() -> bool:
        try:
            return 200 <= (await client.call("GET", path)).status < 300
        except (OSError, HttpError):
            return False

    try:
        return await poll(ok, timeout_s)
    finally:
        await client.close()


async def _wait_ready(endpoint: Endpoint, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await healthy(endpoint.host, endpoint.port, 0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with code {proc.returncode}" if proc.poll() is not None else "not ready"
            tail = log_tail(endpoint.log_path, 30) if endpoint.log_path else ""
            raise RuntimeError(f"server on {endpoint.host}:{endpoint.port} {why}\n{tail}")


@contextlib.asynccontextmanager
async def chronoq_server(
    python: str, extra_args: Sequence[str], *, keep_data: bool = False, ready_timeout_s: float = 60
) -> AsyncIterator[Endpoint]:
    """A fresh ``chronoq up`` on a free loopback port and a fresh temp data dir."""
    port = free_port(HOST)
    data_dir = Path(tempfile.mkdtemp(prefix="chronoq-bench-"))
    log_path = data_dir.parent / f"{data_dir.name}.log"
    argv = chronoq_argv("up", "--host", HOST, "--port", str(port), python=python)
    argv += ["--data-dir", str(data_dir / "data"), *extra_args]
    proc = spawn(argv, log_path)
    endpoint = Endpoint(HOST, port, proc.pid, log_path, tuple(argv))
    failed = True
    try:
        await _wait_ready(endpoint, proc, ready_timeout_s)
        yield endpoint
        failed = False
    finally:
        stop_group(proc, _STOP_GRACE_S)
        if not keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
            if not failed:  # keep the log of a failed run for a post-mortem
                log_path.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def echo_server(cpu_list: str | None = None) -> AsyncIterator[Endpoint]:
    """The trivial canned-response server (``bench.echo_server``), to measure the client."""
    port = free_port(HOST)
    log_path = Path(tempfile.gettempdir()) / f"chronoq-bench-echo-{port}.log"
    argv = [sys.executable, "-m", "bench.echo_server", "--host", HOST, "--port", str(port)]
    if cpu_list and shutil.which("taskset"):
        argv = ["taskset", "-c", cpu_list, *argv]
    proc = spawn(argv, log_path)
    endpoint = Endpoint(HOST, port, proc.pid, log_path, tuple(argv))
    try:
        await _wait_ready(endpoint, proc, 30)
        yield endpoint
    finally:
        stop_group(proc, _STOP_GRACE_S)
        log_path.unlink(missing_ok=True)
