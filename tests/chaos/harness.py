"""Chaos harness: a private PostgreSQL, a process supervisor, a ledger and an API client.

* ``ChaosPostgres`` is ``chronoq.runtime.pgserver.PrivatePostgres`` with extra
  listen addresses / ``pg_hba`` lines (for the network-namespace partition) and a
  crash; databases on it come from ``tests.support.postgres``.
* ``Db`` runs one statement at a time on a short-lived asyncpg connection (tests
  are synchronous; every call has a connect and a command timeout).
* ``Supervisor`` starts each role as ``python -m chronoq <role>`` in its own
  session (process group), kills or freezes ONLY the processes it started (by
  name, or at random with a seeded RNG), logs every fault with its time,
  restarts by name and kills everything it started at teardown.
* ``Ledger`` is the record of actual executions that Chronoq cannot write:
  probe jobs (``probe_payload``) append ``job_id scheduled_for attempt pid
  start_time`` with one O_APPEND write each, then sleep their duration.
* ``Api`` submits jobs to the live api processes and records every 201 in a
  ``JobBook`` (the accepted jobs the invariants are checked against).

Generic helpers (polls, time, processes, databases) come from ``tests.support``; nothing
here sleeps to wait for a condition: ``wait_for`` polls with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from chronoq.domain.clock import parse_rfc3339
from chronoq.runtime.pgserver import PrivatePostgres
from tests.support.processes import (
    HOST,
    chronoq_argv,
    clean_env,
    free_port,
    log_tail,
    proc_state,
    signal_group,
    spawn,
)
from tests.support.times import utcnow
from tests.support.waiting import wait_for

USER = "chaos"

# Short timings for chaos clusters (seconds).
LEASE = 3.0
LEADER_TTL = 1.5
MEMBER_TTL = 1.5
RETRY_BASE = 0.1
LOOKAHEAD = 0.5
REAP_INTERVAL = max(LEASE / 2, 0.5)  # the coordinator's reaper period (services/coordinator.py)
SHARDS = 256
TIMINGS = (
    "--lease-seconds", str(LEASE), "--leader-ttl", str(LEADER_TTL),
    "--member-ttl", str(MEMBER_TTL), "--retry-base", str(RETRY_BASE),
    "--lookahead", str(LOOKAHEAD), "--shutdown-grace", "2", "--shard-count", str(SHARDS),
)  # fmt: skip
SETTLE = 2 * LEASE + REAP_INTERVAL
"""RELIABILITY.md: invariants are checked two lease lengths plus one reaper interval
after the load stopped and every role is up again."""

START_TIMEOUT = 30.0


# -- timing ----------------------------------------------------------------------------


def hold(seconds: float) -> None:
    """The injected timing of a scenario (an outage's length, a settle period): not a wait
    for a condition, so it is a plain sleep, named so that it stands out."""
    time.sleep(max(seconds, 0.0))


def seed_for(default: int) -> int:
    """The RNG seed of a scenario: ``CHRONOQ_CHAOS_SEED`` if set, else the scenario's own."""
    raw = os.environ.get("CHRONOQ_CHAOS_SEED", "")
    return int(raw) if raw.isdigit() else default


# -- PostgreSQL ----------------------------------------------------------------------------------


class ChaosPostgres(PrivatePostgres):
    """A private server; ``listen`` adds addresses, ``hba`` adds ``pg_hba.conf`` lines."""

    def __init__(
        self,
        folder: Path,
        *,
        fast: bool,
        listen: Sequence[str] = (),
        hba: Sequence[str] = (),
    ) -> None:
        super().__init__(folder, fast=fast)
        self.listen = [HOST, *listen]
        self.hba = list(hba)
        self.crashes = 0

    def init(self) -> None:
        fresh = not (self.data / "PG_VERSION").exists()
        super().init()
        if fresh and self.hba:
            with (self.data / "pg_hba.conf").open("a") as conf:
                conf.write("".join(f"{line}\n" for line in self.hba))

    def start(self, timeout: float = 30.0) -> None:
        self.init()
        args = [
            *self._as_owner(), str(self.bindir / "postgres"), "-D", str(self.data),
            "-p", str(self.port), "-k", str(self.data),
            "-c", f"listen_addresses={','.join(self.listen)}", "-c", "max_connections=400",
        ]  # fmt: skip
        if self.fast:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        else:
            args += ["-c", "fsync=on", "-c", "synchronous_commit=on"]
        with open(self.folder / "postgres.log", "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready(timeout)

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: no checkpoint, every backend dies."""
        self.crashes += 1
        self.stop(immediate=True)

    def dsn_for(self, database: str, host: str = HOST) -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.folder / "postgres.log", lines)


class Db:
    """Synchronous, one statement per short-lived connection (survives server restarts)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def _run(self, method: str, sql: str, args: tuple[Any, ...], limit: float) -> Any:
        conn = await asyncpg.connect(self.dsn, timeout=limit)
        try:
            return await getattr(conn, method)(sql, *args, timeout=limit)
        finally:
            await conn.close(timeout=limit)

    def fetch(self, sql: str, *args: Any, timeout: float = 10.0) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = asyncio.run(self._run("fetch", sql, args, timeout))
        return rows

    def fetchval(self, sql: str, *args: Any, timeout: float = 10.0) -> Any:
        return asyncio.run(self._run("fetchval", sql, args, timeout))

    def execute(self, sql: str, *args: Any, timeout: float = 10.0) -> None:
        asyncio.run(self._run("execute", sql, args, timeout))

    def try_fetchval(self, sql: str, *args: Any, timeout: float = 3.0) -> Any:
        """``fetchval``, or None when the server cannot be reached."""
        try:
            return self.fetchval(sql, *args, timeout=timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None

    # -- cluster state ------------------------------------------------------------------------

    def leader(self) -> tuple[str, int] | None:
        """The live leader lease (holder, epoch), by the server's clock."""
        rows = self.try_fetch(
            "SELECT holder, epoch FROM leader_lease WHERE expires_at > now() AND holder IS NOT NULL"
        )
        return (rows[0][0], int(rows[0][1])) if rows else None

    def live_members(self, role: str) -> dict[str, int]:
        """member_id -> pid of the members of ``role`` heard from within the member ttl."""
        rows = self.try_fetch(
            "SELECT member_id, pid FROM members WHERE role = $1"
            " AND heartbeat_at > now() - make_interval(secs => $2)",
            role,
            MEMBER_TTL,
        )
        return {r[0]: int(r[1]) for r in rows or ()}

    def assignment(self) -> dict[str, set[int]]:
        """owner -> shards of the current assignment."""
        owners: dict[str, set[int]] = {}
        for shard, owner in self.try_fetch("SELECT shard_id, owner FROM shard_assignments") or ():
            owners.setdefault(owner, set()).add(int(shard))
        return owners

    def try_fetch(self, sql: str, *args: Any, timeout: float = 3.0) -> list[asyncpg.Record] | None:
        try:
            return self.fetch(sql, *args, timeout=timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None


# -- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """One thing the harness did to the system, with its time (wall clock, epoch seconds)."""

    at: float
    action: str  # SIGKILL SIGTERM SIGSTOP SIGCONT start pg-crash pg-start partition heal
    target: str  # a member name, or "postgres"
    role: str
    pid: int | None = None

    def __str__(self) -> str:
        stamp = datetime.fromtimestamp(self.at, UTC).strftime("%H:%M:%S.%f")[:-3]
        pid = f" pid {self.pid}" if self.pid else ""
        return f"{stamp} {self.action:<9} {self.target} ({self.role}){pid}"


@dataclass(slots=True)
class Member:
    name: str
    role: str
    args: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    prefix: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


class Supervisor:
    """Starts, kills and restarts Chronoq roles as separate processes; logs every fault."""

    def __init__(self, root: Path, dsn: str, db: Db, seed: int) -> None:
        self.root = root
        self.dsn = dsn
        self.db = db
        self.seed = seed
        self.rng = random.Random(seed)
        self.members: dict[str, Member] = {}
        self.faults: list[Fault] = []
        self.blob_dir = root / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)

    # -- membership of the cluster -------------------------------------------------------------

    def add(
        self,
        name: str,
        role: str,
        *,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
        dsn: str | None = None,
        prefix: Sequence[str] = (),
    ) -> Member:
        assert name not in self.members, name
        data = self.root / name
        data.mkdir(parents=True, exist_ok=True)
        args = [
            *chronoq_argv(role), "--store", dsn or self.dsn, "--node-id", name,
            "--data-dir", str(data), "--blob-dir", str(self.blob_dir), *TIMINGS, *extra,
        ]  # fmt: skip
        port = None
        if role == "api":
            port = free_port()
            args += ["--host", HOST, "--port", str(port)]
        tmp = self.root / "tmp"  # where killed workers leave their runs' work dirs
        tmp.mkdir(exist_ok=True)
        member = Member(
            name=name, role=role, args=args, env=clean_env({"TMPDIR": str(tmp), **(env or {})}),
            log=self.root / f"{name}.log",
            port=port, prefix=list(prefix),
        )  # fmt: skip
        self.members[name] = member
        return member

    def add_cluster(self, extra: Sequence[str] = (), **counts: int) -> list[str]:
        """``add_cluster(api=1, coordinator=1, picker=1, worker=1)``: names like ``picker-1``;
        ``extra``: more options for every member (later options win)."""
        names = []
        for role in ("coordinator", "api", "picker", "worker"):
            for i in range(counts.get(role, 0)):
                names.append(self.add(f"{role}-{i + 1}", role, extra=extra).name)
        return names

    def by_role(self, role: str) -> list[Member]:
        return [m for m in self.members.values() if m.role == role]

    def alive(self, role: str | None = None) -> list[Member]:
        return [m for m in self.members.values() if m.alive and role in (None, m.role)]

    # -- starting ------------------------------------------------------------------------------

    def spawn(self, name: str) -> Member:
        member = self.members[name]
        assert not member.alive, f"{name} is running"
        member.process = spawn(
            [*member.prefix, *member.args], member.log, env=member.env, cwd=self.root,
            header=f"start {utcnow().isoformat()}: {shlex.join(member.args)}",
        )  # fmt: skip
        member.pids.append(member.process.pid)
        self._log("start", member)
        return member

    def start(self, *names: str, timeout: float = START_TIMEOUT) -> None:
        """Start the named members (all when none is named) and wait until each is up."""
        chosen = list(names or self.members)
        for name in chosen:
            self.spawn(name)
        for name in chosen:
            self.wait_up(name, timeout)

    def restart(self, name: str, timeout: float = START_TIMEOUT) -> None:
        member = self.members[name]
        if member.alive:
            self.kill(name)
        self.start(name, timeout=timeout)

    def wait_up(self, name: str, timeout: float = START_TIMEOUT) -> None:
        member = self.members[name]
        check: Callable[[], bool]
        if member.role == "api":
            check = lambda: self._healthy(member)  # noqa: E731
        elif member.role in ("picker", "worker"):
            check = lambda: self.db.live_members(member.role).get(name) == member.pid  # noqa: E731
        else:
            check = lambda: True  # noqa: E731 - a coordinator has no member row; see wait_cluster
        ok = wait_for(lambda: not member.alive or check(), timeout, interval=0.1)
        assert member.alive, f"{name} exited during start-up\n{log_tail(member.log)}"
        assert ok and check(), f"{name} not up within {timeout}s\n{log_tail(member.log)}"

    def _healthy(self, member: Member) -> bool:
        try:
            return httpx.get(member.url + "/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_cluster(self, timeout: float = START_TIMEOUT) -> None:
        """Until a leader holds the lease and every shard belongs to a live picker of ours."""

        def ready() -> bool:
            pickers = {m.name for m in self.alive("picker") if not self.is_frozen(m.name)}
            if not self.db.leader() or not pickers:
                return False
            owners = self.db.assignment()
            live = set(self.db.live_members("picker"))
            return set(owners) == pickers & live and sum(len(s) for s in owners.values()) == SHARDS

        assert wait_for(ready, timeout, interval=0.1), (
            f"cluster not ready in {timeout}s: leader {self.db.leader()}, assignment owners "
            f"{ {k: len(v) for k, v in self.db.assignment().items()} }, live pickers "
            f"{self.db.live_members('picker')}\n" + self.log_tails()
        )

    # -- faults --------------------------------------------------------------------------------

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> Fault:
        """Send ``sig`` to the member's process group (a process we started) and reap it."""
        member = self.members[name]
        assert member.process is not None and member.alive, f"{name} is not running"
        fault = self._log(sig.name, member)
        signal_group(member.process.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            if sig is signal.SIGTERM:  # a frozen process cannot act on TERM
                signal_group(member.process.pid, signal.SIGCONT)
            member.process.wait(30)
        return fault

    def freeze(self, name: str) -> Fault:
        return self.kill(name, signal.SIGSTOP)

    def thaw(self, name: str) -> Fault:
        return self.kill(name, signal.SIGCONT)

    def is_frozen(self, name: str) -> bool:
        pid = self.members[name].pid
        return pid is not None and proc_state(pid) == "T"

    def kill_random(self, roles: Iterable[str], sig: signal.Signals = signal.SIGKILL) -> Fault:
        """Kill one live member of ``roles``, chosen by the seeded RNG."""
        wanted = set(roles)
        victims = sorted(m.name for m in self.alive() if m.role in wanted)
        assert victims, f"nothing alive among {sorted(wanted)}"
        return self.kill(self.rng.choice(victims), sig)

    def note(self, action: str, target: str, role: str = "-") -> Fault:
        """Log a fault the harness caused outside a member (PostgreSQL, the network)."""
        fault = Fault(at=time.time(), action=action, target=target, role=role)
        self.faults.append(fault)
        return fault

    def _log(self, action: str, member: Member) -> Fault:
        fault = Fault(at=time.time(), action=action, target=member.name, role=member.role,
                      pid=member.pid)  # fmt: skip
        self.faults.append(fault)
        return fault

    def expect_failpoint(self, name: str, timeout: float) -> Fault | None:
        """Wait for the member to kill itself at its armed failpoint; log it as a fault."""
        member = self.members[name]
        if not wait_for(lambda: not member.alive, timeout, interval=0.02):
            return None
        fault = self._log("failpoint", member)
        return fault

    def unexpected_exits(self) -> list[str]:
        """Members whose current process died although the harness did not kill it."""
        killed = {f.pid for f in self.faults if f.action in ("SIGKILL", "SIGTERM", "failpoint")}
        return [
            f"{m.name} (pid {m.pid}) exited {m.process.returncode}"
            for m in self.members.values()
            if m.process is not None and not m.alive and m.pid not in killed
        ]

    def fault_log(self) -> str:
        lines = [f"seed {self.seed}; {len(self.faults)} events:"]
        lines += [f"  {f}" for f in self.faults]
        return "\n".join(lines)

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(log_tail(m.log, lines) for m in self.members.values())

    def close(self) -> None:
        """Kill everything this supervisor started (thawed first, then SIGKILL)."""
        for member in self.members.values():
            for pid in member.pids:
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    signal_group(pid, sig)
            if member.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    member.process.wait(10)


# -- the ledger ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Execution:
    """One ledger line: a probe job actually started."""

    job_id: str
    scheduled_for: datetime
    attempt: int
    pid: int
    started: datetime


class Ledger:
    """Executions written by the probe jobs themselves; one line per start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch()
        self.bad_lines: list[str] = []

    def probe(self, seconds: float = 0.0, exit_code: int = 0) -> str:
        """A ``cmd:`` payload that records its start in the ledger, then sleeps ``seconds``.

        One ``printf`` into an O_APPEND file is one ``write`` of a short line, so lines of
        concurrent probes never interleave. ``$$`` is the shell's pid, which is also the
        process group of everything the job started (the shell executor makes a session).
        """
        line = (
            'printf \'%s %s %s %s %s\\n\' "$CHRONOQ_JOB_ID" "$CHRONOQ_SCHEDULED_FOR"'
            ' "$CHRONOQ_ATTEMPT" "$$" "$(date +%s.%N)" >> ' + shlex.quote(str(self.path))
        )
        parts = [line]
        if seconds > 0:
            parts.append(f"sleep {seconds:.3f}")
        if exit_code:
            parts.append(f"exit {exit_code}")
        return "cmd:" + "; ".join(parts)

    def read(self) -> list[Execution]:
        out = []
        self.bad_lines = []
        for line in self.path.read_text().splitlines():
            fields = line.split()
            try:
                job_id, scheduled, attempt, pid, started = fields
                out.append(
                    Execution(
                        job_id=job_id,
                        scheduled_for=parse_rfc3339(scheduled),
                        attempt=int(attempt),
                        pid=int(pid),
                        started=datetime.fromtimestamp(float(started), UTC),
                    )
                )
            except ValueError:
                self.bad_lines.append(line)
        return out

    def kill_leftovers(self) -> None:
        """SIGKILL the process groups of probes still running (orphans of killed workers).

        Only groups whose leader's command line names this ledger: our own probes.
        """
        needle = str(self.path).encode()
        for execution in self.read():
            try:
                cmdline = Path(f"/proc/{execution.pid}/cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline:
                signal_group(execution.pid, signal.SIGKILL)


# -- the API -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """A job the API answered 201 for."""

    job_id: str
    spec: dict[str, Any]
    next_fire_at: datetime  # the first fire, as the 201 said
    accepted_at: datetime

    @property
    def recurring(self) -> bool:
        return bool(self.spec.get("cron_schedule"))


@dataclass(slots=True)
class JobBook:
    jobs: dict[str, Accepted] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)  # status -> count
    errors: dict[str, int] = field(default_factory=dict)  # transport error -> count

    def accept(self, spec: dict[str, Any], body: dict[str, Any]) -> Accepted:
        job = Accepted(
            job_id=body["job_id"], spec=spec, next_fire_at=parse_rfc3339(body["next_fire_at"]),
            accepted_at=utcnow(),
        )  # fmt: skip
        self.jobs[job.job_id] = job
        return job

    def summary(self) -> str:
        return f"accepted {len(self.jobs)}, refused {self.refused}, transport errors {self.errors}"


class Api:
    """Submits to the live api members (round robin); records what was accepted."""

    def __init__(self, supervisor: Supervisor, book: JobBook, timeout: float = 5.0) -> None:
        self.supervisor = supervisor
        self.book = book
        self.timeout = timeout
        self._turn = 0
        self._clients: dict[str, httpx.Client] = {}

    def _client(self, member: Member) -> httpx.Client:
        client = self._clients.get(member.name)
        if client is None:
            client = httpx.Client(base_url=member.url, headers={"X-User-ID": USER},
                                  timeout=self.timeout)  # fmt: skip
            self._clients[member.name] = client
        return client

    def _pick(self) -> Member | None:
        live = self.supervisor.alive("api")
        if not live:
            return None
        self._turn += 1
        return live[self._turn % len(live)]

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response | None:
        """POST to a live api; None if no api is live or the request failed in transport."""
        member = self._pick()
        if member is None:
            self.book.errors["no live api"] = self.book.errors.get("no live api", 0) + 1
            return None
        try:
            response = self._client(member).post(path, json=body)
        except httpx.HTTPError as exc:
            name = type(exc).__name__
            self.book.errors[name] = self.book.errors.get(name, 0) + 1
            return None
        if response.status_code != 201:
            self.book.refused[response.status_code] = (
                self.book.refused.get(response.status_code, 0) + 1
            )
        return response

    def submit(self, **spec: Any) -> Accepted | None:
        spec.setdefault("project_id", "chaos")
        response = self.post("/v1/jobs", spec)
        if response is None or response.status_code != 201:
            return None
        return self.book.accept(spec, response.json())

    def submit_batch(self, specs: list[dict[str, Any]]) -> list[Accepted]:
        for spec in specs:
            spec.setdefault("project_id", "chaos")
        response = self.post("/v1/jobs:batch", {"jobs": specs})
        if response is None or response.status_code != 201:
            return []
        items = response.json()["items"]
        return [self.book.accept(s, b) for s, b in zip(specs, items, strict=True)]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
