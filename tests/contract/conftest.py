"""The Store contract harness: every test runs against every adapter, on real engines.

* ``harness`` (per test, parametrised ``sqlite`` / ``postgres`` / ``memory``) gives a
  started store on a FRESH database and closes and drops it afterwards: SQLite gets a
  file under ``tmp_path``; PostgreSQL gets its own database cloned from a
  template that is migrated once per session (``CREATE DATABASE .. TEMPLATE``);
  memory gets a new ``MemoryStore()``.
  Database names carry a random suffix, so parallel sessions never collide.
* The PostgreSQL server is ``CHRONOQ_TEST_POSTGRES_DSN`` (an admin DSN;
  default: the local server, trust auth). When it cannot be reached the
  postgres cases are SKIPPED with the reason, except under ``CI`` (set in the
  environment), where they FAIL: CI must not go green by testing less.
* ``harness.insert_raw_run`` writes a run row behind the store's back (to show
  that the schema itself refuses what the store must never do); the memory store
  has no schema, so such tests skip there;
  ``harness.dsn`` lets PostgreSQL-only tests open a second store on the same
  database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from chronoq.adapters.postgres import PostgresStore
from chronoq.adapters.sqlite import SqliteStore
from chronoq.domain.clock import to_micros
from chronoq.ports.store import Store

T = TypeVar("T")

ADMIN_DSN = os.environ.get(
    "CHRONOQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CONNECT_TIMEOUT = 5.0


def dsn_for(database: str) -> str:
    """``ADMIN_DSN`` pointed at another database on the same server."""
    parts = urlsplit(ADMIN_DSN)
    return urlunsplit(parts._replace(path="/" + database))


def _run_in_thread(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop (for sync session fixtures)."""

    async def main() -> T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


async def _admin() -> Any:
    return await asyncpg.connect(ADMIN_DSN, timeout=CONNECT_TIMEOUT)


async def create_database(name: str, template: str | None = None) -> None:
    """Create database ``name`` (names are ours: random hex, never user input)."""
    conn = await _admin()
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _build_template(name: str) -> None:
    await create_database(name)
    store = PostgresStore(dsn_for(name), min_size=1, max_size=1)
    try:
        await store.start()  # applies the migrations
    finally:
        await store.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database for this session; dropped at the end."""
    name = f"chronoq_contract_template_{uuid.uuid4().hex[:12]}"
    try:
        _run_in_thread(lambda: _build_template(name))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = f"PostgreSQL at {ADMIN_DSN} is not usable: {exc!r}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: PostgreSQL contract tests must run)")
        pytest.skip(reason)
    yield name
    _run_in_thread(lambda: drop_database(name))


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test (cloned from the template); its DSN."""
    name = f"chronoq_contract_{uuid.uuid4().hex[:16]}"
    _run_in_thread(lambda: create_database(name, template=pg_template))
    yield dsn_for(name)
    _run_in_thread(lambda: drop_database(name))


@dataclass(slots=True)
class Harness:
    """One adapter under test, started on a fresh database."""

    kind: str
    store: Store
    dsn: str | None
    sqlite_path: Path | None
    integrity_errors: tuple[type[BaseException], ...]

    def require_schema(self) -> None:
        """Skip the test on the memory store: it has no schema to write behind its back."""
        if self.kind == "memory":
            pytest.skip("the memory store has no schema to write behind its back")

    async def insert_raw_run(
        self, *, job_id: str, user_id: str, scheduled_for: datetime, attempt: int, status: str
    ) -> None:
        """Insert a run row directly, bypassing the store (SQL engines only)."""
        self.require_schema()
        run_id = str(uuid.uuid4())
        if self.sqlite_path is not None:
            at = to_micros(scheduled_for)
            with sqlite3.connect(self.sqlite_path, timeout=5) as conn:
                conn.execute(
                    "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt,"
                    " status, triggered_at, available_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, job_id, user_id, at, attempt, status, at, at),
                )
            return
        conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)
        try:
            await conn.execute(
                "INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
                " triggered_at, available_at) VALUES ($1, $2, $3, $4, $5, $6, $4, $4)",
                run_id,
                job_id,
                user_id,
                scheduled_for,
                attempt,
                status,
            )
        finally:
            await conn.close()


def _memory_store() -> Store:
    """A new ``MemoryStore``; the memory cases skip, saying why, until it can be imported."""
    try:
        from chronoq.adapters.memory import MemoryStore
    except ImportError as exc:
        pytest.skip(f"chronoq.adapters.memory.MemoryStore is not importable yet: {exc}")
    store: Store = MemoryStore()
    return store


@pytest.fixture
async def pg_conn(pg_database: str) -> AsyncIterator[Any]:
    """A raw asyncpg session on the test's fresh database (DDL, catalog reads, a
    statement caught half-way)."""
    connection = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Which adapter, and where its fresh database is (a file path, a DSN, or nothing)."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "db.sqlite")
    if request.param == "memory":
        return "memory", ""
    return "postgres", request.getfixturevalue("pg_database")


@pytest.fixture
async def harness(backend: tuple[str, str]) -> AsyncIterator[Harness]:
    kind, where = backend
    if kind == "sqlite":
        store: Store = SqliteStore(Path(where))
        h = Harness(kind, store, None, Path(where), (sqlite3.IntegrityError,))
    elif kind == "memory":
        store = _memory_store()
        h = Harness(kind, store, None, None, ())
    else:
        store = PostgresStore(where, min_size=1, max_size=4)
        h = Harness(kind, store, where, None, (asyncpg.UniqueViolationError,))
    await store.start()
    try:
        yield h
    finally:
        await store.close()


@pytest.fixture
def store(harness: Harness) -> Store:
    return harness.store
