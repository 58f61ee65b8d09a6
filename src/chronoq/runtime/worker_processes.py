"""Worker processes of an embedded node (``chronoq up --worker-processes N``).

One Python process tops out at one core. With ``--worker-processes N`` the parent keeps
the api, the writer, the picker and the coordinator, and the worker role runs in N
child processes (``runtime.worker_child``) on the same SQLite file:

* **one writer at a time**: each process group-commits its own transactions; a
  ``flock`` beside the database hands the write lock from one to the next the moment
  it is free (``adapters.sqlite.thread``). Every commit is still fsynced.
* **hints** go through a socket pair per child (``adapters.ipc``); the parent forwards
  what one child publishes to the others.
* **the data-dir lock** is inherited by every child: it is free only once the parent
  and all its children have exited, so a restarted node never recovers the runs of a
  child that is still executing them.
* **a child that dies** is seen within ``_WATCH_EVERY``: its lease owner leaves the set
  the coordinator reaps by (``Coordinator(live_workers=...)``), so its runs are handed
  back within a reap pass (1 s), and it is started again — after 1 s, doubling up to
  30 s while it keeps dying within 30 s of its start.
* **a parent that dies** takes its children with it (``PR_SET_PDEATHSIG``: SIGTERM, the
  graceful stop that hands their runs back).
* **metrics**: each child writes its registry's text to
  ``<data_dir>/metrics/worker-<slot>.prom`` every second; the parent's ``/metrics``
  merges those of its live children (``observability.exposition``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pickle
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from prometheus_client import generate_latest

from chronoq.domain.clock import Clock
from chronoq.errors import ConfigError
from chronoq.observability.metrics import Metrics
from chronoq.runtime.config import Settings
from chronoq.services.base import Loop, log

CHILD_MODULE = "chronoq.runtime.worker_child"
_WATCH_EVERY = 0.2
_RESTART_FIRST = 1.0
_RESTART_CAP = 30.0
_STABLE_AFTER = 30.0
"""A child that ran this long before it died starts again after ``_RESTART_FIRST``."""
_METRICS_EVERY = 1.0
_STOP_MARGIN = 15.0
"""Seconds past ``shutdown_grace`` a stopping child gets before SIGKILL."""


@runtime_checkable
class Peers(Protocol):
    """The parent's notifier: it forwards hints to and from each child's socket."""

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None: ...

    def add_peer(self, peer: socket.socket) -> None: ...

    def remove_peer(self, peer: socket.socket) -> None: ...


READY = "worker-process-ready"
"""The hint a worker process publishes (its slot) once its worker runs."""
_START_WITHIN = 60.0


@dataclass(frozen=True, slots=True)
class ChildLink:
    """What a worker process gets from its parent (``runtime.worker_child``)."""

    parent: socket.socket
    slot: int
    metrics_file: Path


def metrics_file(data_dir: Path, slot: int) -> Path:
    return data_dir / "metrics" / f"worker-{slot}.prom"


@dataclass(slots=True)
class _Child:
    slot: int
    worker_id: str = ""
    process: subprocess.Popen[bytes] | None = None
    peer: socket.socket | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class WorkerProcesses:
    """Starts the worker processes, restarts the ones that die, stops them gracefully."""

    name = "worker-processes"

    def __init__(
        self, settings: Settings, peers: Peers, clock: Clock, metrics: Metrics, *,
        node_id: str, inherited_fds: tuple[int, ...] = (),
    ) -> None:  # fmt: skip
        self._settings = settings
        self._peers = peers
        self._clock = clock
        self._node_id = node_id
        self._inherited = inherited_fds
        self._children = [_Child(slot) for slot in range(settings.worker_processes)]
        self._loop = Loop(self.name, self._watch, clock)
        self._stopping = False
        metrics.merged = self._metric_texts
        peers.subscribe(READY, self._ready)

    def live_workers(self) -> frozenset[str]:
        """The lease owners of the children running now (the coordinator reaps the rest)."""
        return frozenset(c.worker_id for c in self._children if c.process is not None)

    async def start(self) -> None:
        """Start every child and return once each one's worker runs (so the node is not
        ready before its workers are); ``ConfigError`` if one exits first."""
        (self._settings.data_dir / "metrics").mkdir(mode=0o700, parents=True, exist_ok=True)
        for child in self._children:
            self._spawn(child)
        try:
            async with asyncio.timeout(_START_WITHIN):
                for child in self._children:
                    await self._started(child)
        except BaseException:
            await self.stop()
            raise
        self._loop.start(after=_WATCH_EVERY)

    async def _started(self, child: _Child) -> None:
        while not child.ready.is_set():
            assert child.process is not None
            status = child.process.poll()
            if status is not None:
                raise ConfigError(f"worker process {child.slot} exited at start (status"
                                  f" {status}): see its messages above")  # fmt: skip
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_WATCH_EVERY):
                    await child.ready.wait()

    def _ready(self, message: str) -> None:
        for child in self._children:
            if str(child.slot) == message:
                child.ready.set()

    async def stop(self) -> None:
        self._stopping = True
        await self._loop.stop()
        running = [c for c in self._children if c.process is not None]
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        within = self._settings.shutdown_grace + _STOP_MARGIN
        await asyncio.gather(*(asyncio.to_thread(_reap, c.process, within) for c in running))
        for child in running:
            self._gone(child)

    def _spawn(self, child: _Child) -> None:
        child.worker_id = f"{self._node_id}/worker-{child.slot}#{uuid.uuid4().hex[:8]}"
        settings = dataclasses.replace(self._settings, node_id=child.worker_id, worker_processes=0)
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            parent_end.send(pickle.dumps((settings, child.slot, os.getpid())))
            fd = child_end.fileno()
            child.process = subprocess.Popen(
                [sys.executable, "-m", CHILD_MODULE, str(fd)],
                pass_fds=(fd, *self._inherited), stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        child.peer = parent_end
        child.ready.clear()
        child.started = self._clock.monotonic()
        self._peers.add_peer(parent_end)
        log.info("worker process %d started (pid %d, lease owner %s)",
                 child.slot, child.process.pid, child.worker_id)  # fmt: skip

    async def _watch(self) -> float:
        now = self._clock.monotonic()
        for child in self._children:
            status = None if child.process is None else child.process.poll()
            if status is not None:
                assert child.process is not None
                log.warning("worker process %d (pid %d) exited with status %d: its runs are"
                            " handed back", child.slot, child.process.pid, status)  # fmt: skip
                quick = now - child.started < _STABLE_AFTER
                child.quick_deaths = child.quick_deaths + 1 if quick else 0
                delay = _RESTART_FIRST * 2 ** max(child.quick_deaths - 1, 0)
                child.restart_at = now + min(delay, _RESTART_CAP)
                self._gone(child)
            if child.process is None and not self._stopping and now >= child.restart_at:
                self._spawn(child)
        return _WATCH_EVERY

    def _gone(self, child: _Child) -> None:
        if child.peer is not None:
            self._peers.remove_peer(child.peer)
        child.peer = None
        child.process = None
        metrics_file(self._settings.data_dir, child.slot).unlink(missing_ok=True)

    def _metric_texts(self) -> list[str]:
        texts = []
        for child in self._children:
            if child.process is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                texts.append(metrics_file(self._settings.data_dir, child.slot).read_text())
        return texts


class MetricsFile:
    """Writes this process's metrics text every second (atomically: write, then rename);
    removes it at stop."""

    name = "metrics-file"

    def __init__(self, metrics: Metrics, path: Path, clock: Clock) -> None:
        self._metrics = metrics
        self._path = path
        self._loop = Loop(self.name, self._write, clock)

    async def start(self) -> None:
        await self._write()
        self._loop.start(after=_METRICS_EVERY)

    async def stop(self) -> None:
        await self._loop.stop()
        self._path.unlink(missing_ok=True)

    async def _write(self) -> float:
        partial = self._path.with_name(self._path.name + ".partial")
        data = generate_latest(self._metrics.registry)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(partial, self._path)
        return _METRICS_EVERY


def _reap(process: subprocess.Popen[bytes] | None, within: float) -> None:
    if process is None:
        return
    try:
        process.wait(within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
