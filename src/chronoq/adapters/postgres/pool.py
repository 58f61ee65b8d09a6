"""Connection pools shared by the PostgreSQL adapters: open migrated, close without hanging."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from chronoq.adapters.postgres.driver import asyncpg
from chronoq.adapters.postgres.errors import TRANSIENT, translated
from chronoq.adapters.postgres.migrations import apply_migrations
from chronoq.errors import UnavailableError

_CLOSE_TIMEOUT = 10.0
_TX_ATTEMPTS = 3
"""Runs of a transaction that PostgreSQL aborted as a deadlock or serialization failure."""
T = TypeVar("T")

SESSION_SETTINGS = {
    "application_name": "chronoq",
    # A client that vanished mid-transaction (crash, partition, SIGSTOP) must not hold its
    # row locks for the ~2 h of default TCP keepalive: our transactions never sit idle, so
    # the server ends such a session after 5 s and the locks go with it (RELIABILITY R9).
    "idle_in_transaction_session_timeout": "5000",
    # ... and notices a dead peer of an idle connection within ~11 s.
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}


async def open_pool(dsn: str, *, min_size: int, max_size: int, connect_timeout: float) -> Any:
    """A pool on ``dsn`` whose database has every migration applied (serialized across
    starters); connection errors become ``UnavailableError``."""
    with translated("connecting to PostgreSQL"):
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            server_settings=SESSION_SETTINGS,
            reset=_reset,
        )
    try:
        with translated("migrating PostgreSQL"):
            async with pool.acquire() as conn:
                await apply_migrations(conn)
    except BaseException:
        pool.terminate()
        raise
    return pool


async def _reset(conn: Any) -> None:
    """What a connection needs before reuse: no open transaction. Our pooled sessions never
    LISTEN, hold session advisory locks or change settings, so asyncpg's default reset
    (UNLISTEN *, RESET ALL, ... on every release) is ~1.4 extra round trips per job for
    nothing (measured: ~25% of a cluster's CPU)."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def close_pool(pool: Any) -> None:
    """Close gracefully, or terminate if the server is gone or slow."""
    if pool is None:
        return
    try:
        await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT)
    except (TimeoutError, OSError, asyncpg.InterfaceError):
        pool.terminate()


class PgPool:
    """The pool lifecycle every PostgreSQL adapter shares: opened (and migrated) by
    ``open``, safe to close twice, ``get`` refuses use before ``open`` or after ``close``."""

    def __init__(
        self, dsn: str, *, owner: str, min_size: int, max_size: int, connect_timeout: float
    ) -> None:
        self._dsn = dsn
        self._owner = owner
        self._sizes = (min_size, max_size)
        self._connect_timeout = connect_timeout
        self._pool: Any = None

    async def open(self) -> None:
        if self._pool is None:
            self._pool = await open_pool(
                self._dsn,
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                connect_timeout=self._connect_timeout,
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        await close_pool(pool)

    async def transaction(self, what: str, body: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``body(conn)`` in a transaction, again (up to 3 runs) if PostgreSQL aborted it
        as a deadlock or serialization failure; driver errors are translated."""
        with translated(what):
            for attempt in range(1, _TX_ATTEMPTS + 1):
                try:
                    async with self.get().acquire() as conn, conn.transaction():
                        return await body(conn)
                except TRANSIENT:
                    if attempt == _TX_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    def get(self) -> Any:
        """The asyncpg pool; ``UnavailableError`` if not open."""
        if self._pool is None:
            raise UnavailableError(f"{self._owner} is not started")
        return self._pool
