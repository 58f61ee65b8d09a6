"""Processes: ``/proc`` inspection, process groups, a clean environment, free ports, logs.

Every process the suites and the benchmark start runs in a session (process group)
of its own (``spawn``), so that a signal to the group reaches everything it started
and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

HOST = "127.0.0.1"


# -- command lines and environment ---------------------------------------------------------


def chronoq_argv(*args: str, python: str = sys.executable) -> list[str]:
    """``python -m chronoq ARGS``: how every test and benchmark runs Chronoq."""
    return [python, "-m", "chronoq", *args]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``CHRONOQ_*`` (a child sees only what a test sets),
    unbuffered output, then ``extra``.

    As root, ``CHRONOQ_SHELL_USER=root``: test jobs write marker files into pytest's
    private (0700) folders, which ``nobody`` (the default job user of a root server) could
    not reach. The tests of ``--shell-user`` pass ``CHRONOQ_SHELL_USER=""`` (the default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOQ_")}
    env["PYTHONUNBUFFERED"] = "1"
    if os.geteuid() == 0:
        env["CHRONOQ_SHELL_USER"] = "root"
    env.update(extra or {})
    return env


# -- ports ---------------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """A port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_range(count: int, host: str = HOST, attempts: int = 200) -> int:
    """A base port such that ``base .. base+count-1`` are all free right now."""
    for _ in range(attempts):
        base = free_port(host)
        if base + count > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports found")


# -- /proc ---------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after ``(comm)``, or None if the process is gone.

    Index 0 is the state, 1 ppid, 2 pgrp, 3 session, 11/12 utime/stime, 13/14
    cutime/cstime (clock ticks).
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``R``, ``S``, ``T`` stopped, ``Z`` zombie...)."""
    fields = proc_stat(pid)
    return None if fields is None else fields[0]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    return proc_state(pid) not in (None, "Z", "X")


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def children_map() -> dict[int, list[int]]:
    """ppid -> child pids, for every process (one scan of ``/proc``)."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        fields = proc_stat(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    return children


def session_pids(sid: int) -> list[int]:
    """Live processes in session ``sid``."""
    found = []
    for pid in _pids():
        fields = proc_stat(pid)
        if fields is not None and int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append(pid)
    return found


def pids_with_token(token: str) -> list[int]:
    """Live processes whose command line contains ``token`` (never this process)."""
    found = []
    needle = token.encode()
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and pid_alive(pid):
            found.append(pid)
    return found


# -- starting and stopping -----------------------------------------------------------------


def spawn(
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    header: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, stdin from /dev/null, stdout and stderr
    appended to ``log`` (after a ``header`` line, if given)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        if header is not None:
            out.write(f"\n=== {header}\n".encode())
            out.flush()
        return subprocess.Popen(
            list(argv),
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to a process group; nothing if it is gone or not ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> int | None:
    """SIGTERM the process's group and wait up to ``grace``; then SIGKILL whatever of the
    group is left (children may outlive the leader). The exit code, or None if stuck."""
    if proc.poll() is None:
        signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    return proc.returncode


def log_tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file, under a header naming it."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- last {lines} lines of {path} ---\n{tail}"
