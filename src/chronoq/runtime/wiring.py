"""Settings -> adapters. The only module that imports ``chronoq.adapters``.

Backends are chosen by the store URL, like ``arq``'s ``RedisSettings.from_dsn``:

* no URL / ``sqlite:///path`` — embedded: SQLite (WAL) + a blob folder +
  in-process notifications and coordination; one process holds the data dir
  lock, so a second scheduler on the same files is refused.
* ``postgresql://...`` — distributed: PostgreSQL store, LISTEN/NOTIFY wake-ups,
  PostgreSQL leases for leadership and shard assignment; any number of processes.

The seed-shaped backends replace one port each, chosen by their own setting:
``--blob s3://`` (BlobStore), ``--dispatch redis://|sqs://`` (Dispatch: a queue of
run ids in front of the store), ``--coordination etcd://`` (Coordination),
``--ingest redis://`` (SubmissionLog). Each lives in its own adapter package and is
imported only when chosen, so its client library is needed only then.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from chronoq.adapters.fs import FsBlobStore
from chronoq.adapters.fs.private import PRIVATE_FILE, private_dir
from chronoq.adapters.ipc import IpcNotifier
from chronoq.adapters.memory import MemoryCoordination, MemoryNotifier
from chronoq.adapters.sqlite import SqliteStore
from chronoq.domain.clock import Clock
from chronoq.errors import ConfigError
from chronoq.ports.blob import BlobStore
from chronoq.ports.coordination import Coordination
from chronoq.ports.dispatch import Dispatch
from chronoq.ports.jobs import JobStore
from chronoq.ports.notify import Notifier
from chronoq.ports.submissions import SubmissionLog
from chronoq.ports.tokens import TokenStore
from chronoq.runtime.config import Settings


class _Lifecycle(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class Backends:
    """The adapters of one node, by port. ``jobs`` and ``dispatch`` are one object for
    SQLite and PostgreSQL (the store's own run table); each distinct adapter object is
    started once and closed once."""

    jobs: JobStore
    dispatch: Dispatch
    blob: BlobStore
    notifier: Notifier
    coordination: Coordination
    distributed: bool
    lock: IO[str] | None = None
    submissions: SubmissionLog | None = None

    def _adapters(self) -> list[_Lifecycle]:
        """Every adapter once, in start order (the store first: it applies migrations)."""
        adapters: list[_Lifecycle] = [self.jobs, self.dispatch]
        if self.submissions is not None:
            adapters.append(self.submissions)
        adapters += [self.blob, self.notifier, self.coordination]
        distinct: list[_Lifecycle] = []
        for adapter in adapters:
            if not any(adapter is seen for seen in distinct):
                distinct.append(adapter)
        return distinct

    async def start(self) -> None:
        for adapter in self._adapters():
            await adapter.start()

    async def close(self) -> None:
        """Close every adapter (each once, even if another fails), then the data-dir lock;
        raise the first failure."""
        failures: list[Exception] = []
        for adapter in reversed(self._adapters()):
            try:
                await adapter.close()
            except Exception as exc:
                failures.append(exc)
        if self.lock is not None:
            self.lock.close()
            self.lock = None
        if failures:
            raise failures[0]


def build_backends(
    settings: Settings, clock: Clock | None = None, *, parent: socket.socket | None = None
) -> Backends:
    if settings.distributed:
        return postgres_backends(settings)
    return embedded_backends(settings, clock, parent=parent)


def embedded_backends(
    settings: Settings, clock: Clock | None = None, *, parent: socket.socket | None = None
) -> Backends:
    """SQLite + a blob folder + in-process notifications, in ``settings.data_dir``.

    The data dir is ``0700`` and every file in it ``0600``, whatever the umask. With
    worker processes (``runtime.worker_processes``) hints cross processes (``IpcNotifier``:
    the parent is the hub, a child, given its ``parent`` socket, a leaf) and a child
    takes no data-dir lock: it inherited its parent's.
    """
    data_dir = private_dir(settings.data_dir)
    db_path = _sqlite_path(settings.store) or data_dir / "chronoq.db"
    db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # never chmod a folder we
    # were only pointed at (sqlite:////tmp/x.db); the database file itself is still 0600
    lock = None if parent is not None else lock_data_dir(db_path.parent)
    store = SqliteStore(db_path, synchronous=settings.sqlite_synchronous)
    notifier: Notifier = MemoryNotifier()
    if parent is not None:
        notifier = IpcNotifier([parent], hub=False)
    elif settings.worker_processes:
        notifier = IpcNotifier()
    return Backends(
        jobs=store,
        dispatch=store,
        blob=blob_store(settings, data_dir / "blobs"),
        notifier=notifier,
        coordination=MemoryCoordination(clock),
        distributed=False,
        lock=lock,
    )


def postgres_backends(settings: Settings) -> Backends:
    """PostgreSQL for the store, wake-ups and coordination; blobs in a shared folder."""
    try:
        from chronoq.adapters.postgres import (
            PostgresCoordination,
            PostgresNotifier,
            PostgresStore,
            PostgresSubmissionLog,
        )
    except ImportError as exc:  # asyncpg missing (the adapter's own message may say so)
        hint = "pip install 'chronoq[postgres]'"
        detail = "" if hint in str(exc) else f" ({exc})"
        raise ConfigError(f"PostgreSQL support needs asyncpg: {hint}{detail}") from None
    dsn = settings.store
    assert dsn is not None
    store = PostgresStore(dsn)
    submissions: SubmissionLog | None = None
    if settings.ingest == "log":
        submissions = PostgresSubmissionLog(dsn)
    elif settings.ingest.startswith("redis://"):
        submissions = _adapter("redis", "submission_log", "redis")(settings.ingest)
    dispatch: Dispatch = store
    if settings.dispatch:
        # A queue of run ids in front of the store's run table (the store stays the truth).
        dispatch = _adapter("queue", "queued_dispatch", _QUEUE_EXTRA[settings.dispatch[:5]])(
            store, settings.dispatch
        )
    coordination: Coordination = PostgresCoordination(dsn)
    if settings.coordination:
        coordination = _adapter("etcd", "coordination", "etcd")(settings.coordination)
    return Backends(
        jobs=store,
        dispatch=dispatch,
        blob=blob_store(settings, settings.data_dir / "blobs"),
        notifier=PostgresNotifier(dsn),
        coordination=coordination,
        distributed=True,
        submissions=submissions,
    )


_QUEUE_EXTRA = {"redis": "redis", "sqs:/": "sqs"}


def blob_store(settings: Settings, default_dir: Path) -> BlobStore:
    """S3 when ``--blob s3://...`` is set, else the blob folder."""
    if settings.blob:
        store: BlobStore = _adapter("s3", "blob_store", "s3")(settings.blob)
        return store
    return FsBlobStore(settings.blob_dir or default_dir)


def _adapter(package: str, factory: str, extra: str) -> Any:
    """``chronoq.adapters.<package>.<factory>``, imported only when its backend is chosen;
    a missing client library is a one-line ConfigError naming the extra to install.
    Each factory takes the setting's URL and raises ConfigError naming the setting for a
    bad one."""
    try:
        module = importlib.import_module(f"chronoq.adapters.{package}")
    except ImportError as exc:
        raise ConfigError(
            f"this backend needs an optional library: pip install 'chronoq[{extra}]' ({exc})"
        ) from None
    return getattr(module, factory)


def _sqlite_path(url: str | None) -> Path | None:
    if url is None:
        return None
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"unsupported store URL {url!r}: use sqlite:///path or postgresql://")
    return Path(url.removeprefix("sqlite:///"))


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the data dir: a second scheduler on the same files is refused."""
    fd = os.open(data_dir / "chronoq.lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    handle = open(fd, "a+")  # noqa: SIM115 - held for the node's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(
            f"another Chronoq process is using {data_dir} (its lock is held); stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class TokenAdmin(TokenStore, _Lifecycle, Protocol):
    """A store opened for ``chronoq token`` (start it, then use its ``TokenStore`` side)."""


def token_store(store: str | None, data_dir: Path) -> TokenAdmin:
    """The store whose API tokens ``chronoq token`` manages: PostgreSQL, or the embedded
    SQLite file. The data-dir lock is NOT taken: the command runs beside a live server,
    and SQLite in WAL mode lets a second process write between the server's commits."""
    settings = Settings(store=store, data_dir=data_dir)
    if settings.distributed:
        assert store is not None
        admin: TokenAdmin = postgres_backends(settings).jobs  # type: ignore[assignment]
        return admin
    path = _sqlite_path(store) or private_dir(data_dir) / "chronoq.db"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SqliteStore(path, synchronous=settings.sqlite_synchronous)


async def migrate_store(url: str) -> None:
    """Apply every pending migration of the store at ``url`` (idempotent)."""
    settings = Settings(store=url)
    if settings.distributed:
        store: JobStore = postgres_backends(settings).jobs
    else:
        path = _sqlite_path(url)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(path)
    await store.start()  # applies migrations, under the store's own lock
    await store.close()
