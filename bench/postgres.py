"""The distributed profile's private PostgreSQL: production durability (fsync on).

One server lives for the whole profile, in a temp folder
(``tests.support.postgres.private_postgres``); every scenario run gets a fresh
database on it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg

from chronoq.runtime.pgserver import PrivatePostgres
from tests.support.postgres import admin_execute, create_database, drop_database, private_postgres

DURABILITY = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "max_connections",
    "shared_preload_libraries",
)


class BenchPostgres:
    """A started ``PrivatePostgres`` with ``fast=False``, and databases on it."""

    def __init__(self, server: PrivatePostgres) -> None:
        self.server = server
        self.statements = False
        self._databases = 0

    @property
    def pid(self) -> int | None:
        """The root of the server's process tree (``runuser`` as root, else the postmaster)."""
        return None if self.server.process is None else self.server.process.pid

    @property
    def folder(self) -> Path:
        """The temp folder the server lives in (clusters keep their files beside it)."""
        return self.server.folder.parent

    @property
    def admin_dsn(self) -> str:
        return self.server.dsn

    async def enable_statements(self) -> None:
        """Load pg_stat_statements (a restart: it must be preloaded); for ``--pg-statements``."""
        statement = "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
        admin_execute(self.admin_dsn, statement)
        self.server.stop()
        self.server.start(timeout=60)
        self.statements = True

    async def create_database(self) -> tuple[str, str]:
        """A fresh database: (name, dsn)."""
        self._databases += 1
        name = f"bench_{self._databases}_{os.getpid()}"
        dsn = create_database(self.admin_dsn, name)
        if self.statements:
            admin_execute(dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return name, dsn

    async def drop_database(self, name: str) -> None:
        drop_database(self.admin_dsn, name)

    async def describe(self) -> dict[str, Any]:
        """Version and the settings that decide durability and memory."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            info: dict[str, Any] = {"version": await conn.fetchval("SELECT version()")}
            for name in DURABILITY:
                info[name] = await conn.fetchval(f"SHOW {name}")
        finally:
            await conn.close()
        info["data_dir"] = str(self.server.data)
        return info


@contextlib.contextmanager
def bench_postgres(*, keep_data: bool = False) -> Iterator[BenchPostgres]:
    """A private, durable PostgreSQL for the whole profile; stopped and deleted after."""
    factory = lambda folder: PrivatePostgres(folder, fast=False)  # noqa: E731
    with private_postgres(factory, prefix="chronoq-bench-dist-", keep=keep_data) as server:
        yield BenchPostgres(server)


@contextlib.asynccontextmanager
async def session_postgres(
    keep_data: bool, statements: bool, label: str
) -> AsyncIterator[tuple[BenchPostgres, dict[str, Any]]]:
    """The benchmark's private PostgreSQL for a whole session, with pg_stat_statements
    loaded when asked, described once on stderr: ``(server, its settings)``."""
    with bench_postgres(keep_data=keep_data) as pg:
        if statements:
            await pg.enable_statements()
        info = await pg.describe()
        print(
            f"[bench] {label}PostgreSQL {info['version'].split(',')[0]}: fsync={info['fsync']}"
            f" synchronous_commit={info['synchronous_commit']} (durable)",
            file=sys.stderr,
            flush=True,
        )
        yield pg, info
