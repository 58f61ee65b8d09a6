"""One dedicated thread owns the SQLite connection and group-commits.

Every store operation is a function of the connection. The thread takes all
operations waiting in its queue, runs them inside ONE transaction (each in its
own savepoint, so one failing operation fails alone), commits once, and then
resolves every caller's future. Under load this turns thousands of small
writes into a few commits (and a few fsyncs) per second; when idle an
operation waits for nobody.

Several processes may write one database file (``chronoq up --worker-processes``,
``chronoq token`` beside a server). SQLite's own wait for the write lock sleeps in
growing steps (1, 2, 5, 10... ms) and can lose to a busy writer again and again; so
each transaction first takes an exclusive ``flock`` on ``<database>-writer.lock``, which
wakes the next writer the moment the last one commits. The lock is held only around
one group commit, never between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from chronoq.adapters.fs.private import private_file, tighten
from chronoq.errors import UnavailableError

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]

_MAX_BATCH = 512
_STOP = object()


class SqliteThread:
    """Runs operations on a private connection in a background thread."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self._path = path
        self._synchronous = synchronous
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._writer_lock: int | None = None
        """fd of ``<database>-writer.lock`` (None for ``:memory:``)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="chronoq-sqlite", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    def run(self, operation: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``operation``; the future resolves after the transaction commits."""
        if self._thread is None:
            raise UnavailableError("the SQLite store is not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((operation, future, loop))
        return future

    def _connect(self) -> sqlite3.Connection:
        if str(self._path) != ":memory:":
            # 0600 whatever the umask: SQLite gives -wal and -shm the database file's mode.
            private_file(self._path)
            for suffix in ("-wal", "-shm", "-journal"):
                tighten(self._path.with_name(self._path.name + suffix))
            lock = private_file(self._path.with_name(self._path.name + "-writer.lock"))
            self._writer_lock = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-65536")
        # Statement journals and temporary b-trees in memory, not in temp files: many
        # writes open a statement journal, and by default it was written to a temp file
        # and thrown away — 80% of the bytes the embedded server wrote (bench batch:
        # 18 KB -> 4 KB per job). They live for one statement, so they are small; the
        # WAL carries durability, which does not change.
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def _main(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                stop = self._drain(batch)
                self._run_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()
            if self._writer_lock is not None:
                os.close(self._writer_lock)
                self._writer_lock = None

    def _drain(self, batch: list[Any]) -> bool:
        while len(batch) < _MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            batch.append(item)
        return False

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        if self._writer_lock is not None:
            fcntl.flock(self._writer_lock, fcntl.LOCK_EX)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for operation, future, _loop in batch:
                results.append((future, *_run_one(conn, operation)))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = UnavailableError(f"SQLite store error: {exc}")
            results = [(future, None, error) for _op, future, _loop in batch]
        finally:
            if self._writer_lock is not None:
                fcntl.flock(self._writer_lock, fcntl.LOCK_UN)
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for (_op, _fut, loop), result in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append(result)
        for loop, items in by_loop.items():
            # A closed loop raises RuntimeError: nobody waits for these results any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve_all, items)


def _run_one(conn: sqlite3.Connection, operation: Operation) -> tuple[Any, BaseException | None]:
    conn.execute("SAVEPOINT op")
    try:
        result = operation(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return None, exc
    conn.execute("RELEASE op")
    return result, None


def _resolve_all(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in items:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
