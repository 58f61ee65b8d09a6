"""A private PostgreSQL in a temp folder, and databases on it (one per test or run).

* ``private_postgres(factory)`` starts a ``chronoq.runtime.pgserver.PrivatePostgres``
  (or a subclass) in a fresh world-traversable temp folder — as root the server runs
  as the ``postgres`` user, which must reach its data; pytest's tmp dirs are private
  to root — and stops and deletes it afterwards.
* ``create_database`` / ``drop_database`` run on the server's admin DSN; names are
  ours (random hex), never user input. ``migrated_template`` builds a database with
  ``chronoq migrate`` (the CLI, as a user would) to clone per test with ``template=``.

The database functions are synchronous (each statement on a short-lived connection), so
that synchronous tests and the benchmark's set-up can share them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from chronoq.runtime.pgserver import PrivatePostgres
from tests.support.processes import chronoq_argv, clean_env

CONNECT_TIMEOUT = 10.0
P = TypeVar("P", bound=PrivatePostgres)


@contextlib.contextmanager
def private_postgres(
    factory: Callable[[Path], P],
    *,
    prefix: str = "chronoq-pg-",
    keep: bool = False,
    timeout: float = 60.0,
) -> Iterator[P]:
    """``factory(folder)`` started in a fresh temp folder; stopped (and the folder deleted
    unless ``keep``) afterwards, whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    server = factory(folder / "pg")
    try:
        server.start(timeout=timeout)
        yield server
    finally:
        try:
            server.destroy()
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)


def dsn_for(admin_dsn: str, database: str) -> str:
    """``admin_dsn`` pointed at another database on the same server."""
    return urlunsplit(urlsplit(admin_dsn)._replace(path="/" + database))


def admin_execute(admin_dsn: str, statement: str) -> None:
    """Run one statement on its own short-lived connection (synchronous; safe to call from
    inside an event loop: it then runs on a private loop in a thread)."""

    async def execute() -> None:
        conn = await asyncpg.connect(admin_dsn, timeout=CONNECT_TIMEOUT)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(execute())
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, execute()).result()


def create_database(admin_dsn: str, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` (a copy of ``template`` if given); its DSN."""
    clause = f' TEMPLATE "{template}"' if template else ""
    admin_execute(admin_dsn, f'CREATE DATABASE "{name}"{clause}')
    return dsn_for(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    admin_execute(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(dsn: str, timeout: float = 60.0) -> None:
    """``chronoq migrate --store DSN``, as a user would run it."""
    subprocess.run(
        chronoq_argv("migrate", "--store", dsn),
        check=True, capture_output=True, timeout=timeout, env=clean_env(),
    )  # fmt: skip


def migrated_template(admin_dsn: str, prefix: str = "template") -> str:
    """A new database migrated by ``chronoq migrate``, to clone per test; its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    migrate(create_database(admin_dsn, name))
    return name
