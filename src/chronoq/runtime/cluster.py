"""``chronoq cluster up``: a multi-process cluster on one machine, supervised.

Each role runs as its own ``chronoq <role>`` process over one PostgreSQL
store (a private server in the cluster folder when no URL is given). Without
asyncpg nothing starts: ``start`` raises a one-line ``ConfigError`` saying what
to install. The supervisor restarts a process that dies (with a backoff), and
stops all of them on Ctrl-C / SIGTERM. A process that dies within
``QUICK_EXIT_SECONDS`` of starting ``GIVE_UP_AFTER`` times in a row is not
restarted again (a bad flag or an unreachable store would only die again): the
supervisor reports its exit status and the last lines of its log, and returns
once no process is left to supervise. The cluster's layout is written to
``<folder>/cluster.json`` for ``chronoq cluster status``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chronoq.errors import ConfigError
from chronoq.runtime.pgserver import PrivatePostgres, free_port
from chronoq.runtime.stack import LocalStack

STATE_FILE = "cluster.json"
_RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0)
QUICK_EXIT_SECONDS = 5.0
"""A process that exits sooner than this after its start died "at once"."""
GIVE_UP_AFTER = 3
"""Quick deaths in a row after which a process is not restarted any more."""
_LOG_LINES = 5


@dataclass(slots=True)
class Member:
    name: str
    role: str
    args: list[str]
    log: str
    port: int | None = None
    pid: int | None = None
    restarts: int = 0
    quick_exits: int = 0
    """Consecutive exits within ``QUICK_EXIT_SECONDS`` of a start."""
    given_up: bool = False
    started_at: float = 0.0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def public(self) -> dict[str, object]:
        return {
            "name": self.name, "role": self.role, "port": self.port, "pid": self.pid,
            "log": self.log, "restarts": self.restarts, "given_up": self.given_up,
        }  # fmt: skip


@dataclass(slots=True, kw_only=True)
class ClusterPlan:
    folder: Path
    store: str | None
    api: int = 2
    pickers: int = 2
    workers: int = 3
    coordinators: int = 2
    writers: int = 0
    """With writers, the api processes log submissions and the writers move them."""
    ingest: str = "log"
    """The submission log with writers: ``log`` (PostgreSQL) or ``redis://host:port/db``."""
    base_port: int = 8080
    extra: list[str] = field(default_factory=list)
    backends: tuple[str, ...] = ()
    """``--with``: seed-shaped backends started next to the roles (``runtime.stack``)."""


class Cluster:
    def __init__(self, plan: ClusterPlan) -> None:
        self.plan = plan
        self.folder = plan.folder.resolve()
        self.postgres: PrivatePostgres | None = None
        self.stack = LocalStack(self.folder / "backends", plan.backends)
        self.members: list[Member] = []
        self._stopping = False

    @property
    def store(self) -> str:
        if self.plan.store:
            return self.plan.store
        assert self.postgres is not None
        return self.postgres.dsn

    def start(self) -> None:
        require_asyncpg()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.stack.start()  # first: a missing program stops everything before it starts
        if not self.plan.store:
            self.postgres = PrivatePostgres(self.folder / "postgres")
            self.postgres.start()
        self.members = self._plan_members()
        try:
            for member in self.members:
                self._spawn(member)
            self.write_state()
        except BaseException:
            self.stop()
            raise

    def _plan_members(self) -> list[Member]:
        p = self.plan
        backends = self.stack.role_args(writers=p.writers)
        shared = ["--store", self.store, "--data-dir", str(self.folder / "data"), *backends]
        if p.writers and "--ingest" not in backends:
            shared += ["--ingest", p.ingest]
        shared += p.extra
        members = []
        counts = (
            ("coordinator", p.coordinators), ("writer", p.writers), ("picker", p.pickers),
            ("worker", p.workers),
        )  # fmt: skip
        for i in range(p.api):
            port = p.base_port + i
            members.append(self._member(f"api-{i + 1}", "api", [*shared, "--port", str(port)],
                                        port))  # fmt: skip
        for role, count in counts:
            for i in range(count):
                members.append(self._member(f"{role}-{i + 1}", role, shared, None))
        return members

    def _member(self, name: str, role: str, args: list[str], port: int | None) -> Member:
        node_id = f"{name}@{os.uname().nodename}"
        return Member(
            name=name, role=role, port=port, log=str(self.folder / "logs" / f"{name}.log"),
            args=[sys.executable, "-m", "chronoq", role, "--node-id", node_id, *args],
        )  # fmt: skip

    def _spawn(self, member: Member) -> None:
        Path(member.log).parent.mkdir(parents=True, exist_ok=True)
        with open(member.log, "ab") as log:
            member.process = subprocess.Popen(
                member.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **self.stack.role_env()},
            )  # fmt: skip
        member.pid = member.process.pid
        member.started_at = time.monotonic()

    def supervise(self, report: Callable[[str], None] = print) -> bool:
        """Restart members that die, until ``stop`` (or a signal) ends it.

        A member that died at once ``GIVE_UP_AFTER`` times in a row is given up: ``report``
        gets one message with its exit status and the tail of its log. Returns True when
        stopped, False when every member was given up.
        """
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._request_stop())
        due: dict[str, float] = {}
        while not self._stopping:
            for member in self.members:
                if member.given_up or member.process is None or member.process.poll() is None:
                    continue
                if member.name not in due:
                    if self._gives_up(member, report):
                        continue
                    wait = _RESTART_BACKOFF[min(member.restarts, len(_RESTART_BACKOFF) - 1)]
                    due[member.name] = time.monotonic() + wait
                elif time.monotonic() >= due.pop(member.name):
                    member.restarts += 1
                    self._spawn(member)
                    self.write_state()
            if self.members and all(member.given_up for member in self.members):
                return False
            time.sleep(0.2)
        return True

    def _gives_up(self, member: Member, report: Callable[[str], None]) -> bool:
        """Count a death of ``member``; give it up (and report why) after quick deaths."""
        assert member.process is not None
        quick = time.monotonic() - member.started_at < QUICK_EXIT_SECONDS
        member.quick_exits = member.quick_exits + 1 if quick else 0
        if member.quick_exits < GIVE_UP_AFTER:
            return False
        member.given_up = True
        self.write_state()
        tail = "\n".join(f"    {line}" for line in _log_tail(member.log))
        report(
            f"{member.name} exited {member.quick_exits} times within {QUICK_EXIT_SECONDS:g}s"
            f" of starting (exit status {member.process.returncode}); not restarting it."
            f" Last lines of {member.log}:\n{tail}"
        )
        return True

    def _request_stop(self) -> None:
        self._stopping = True

    def stop(self, grace: float = 20.0) -> None:
        self._stopping = True
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(member.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for member in self.members:
            if member.process is None:
                continue
            try:
                member.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(member.process.pid, signal.SIGKILL)
                member.process.wait()
        if self.postgres is not None:
            self.postgres.destroy()
        self.stack.stop()
        (self.folder / STATE_FILE).unlink(missing_ok=True)

    def write_state(self) -> None:
        state = {
            "store": self.store,
            "backends": self.stack.endpoints(),
            "coordination": self.stack.coordination_url(),
            "members": [m.public() for m in self.members],
        }
        (self.folder / STATE_FILE).write_text(json.dumps(state, indent=2))


def require_asyncpg() -> None:
    """Raise ``ConfigError`` (one line: what to install) when asyncpg cannot be imported."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise ConfigError(
            "chronoq cluster needs asyncpg (PostgreSQL): pip install 'chronoq[postgres]'"
            " (in a clone: .venv/bin/pip install -e '.[postgres]')"
        ) from None


def _log_tail(path: str, lines: int = _LOG_LINES) -> list[str]:
    """The last ``lines`` non-empty lines of a log file (none if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - 16_384, 0))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def read_state(folder: Path) -> dict[str, object] | None:
    path = folder / STATE_FILE
    if not path.exists():
        return None
    data: dict[str, object] = json.loads(path.read_text())
    return data


__all__ = [
    "GIVE_UP_AFTER",
    "QUICK_EXIT_SECONDS",
    "Cluster",
    "ClusterPlan",
    "free_port",
    "read_state",
    "require_asyncpg",
]
