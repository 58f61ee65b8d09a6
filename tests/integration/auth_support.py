"""Shortcuts for the ``--auth token`` tests: tokens made with the CLI, bearer clients."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
from typing import TYPE_CHECKING

import asyncpg
import httpx

from tests.support.processes import chronoq_argv, clean_env

if TYPE_CHECKING:
    from .conftest import ServerHandle

CLI_TIMEOUT = 60.0
ADMIN_DSN = os.environ.get(
    "CHRONOQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def postgres_problem() -> str | None:
    """Why the test PostgreSQL (``ADMIN_DSN``) cannot be used, or None."""

    async def probe() -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {ADMIN_DSN} is not reachable: {exc!r}"
    return None


def token_cli(
    server: ServerHandle, *args: str, store: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``chronoq token ARGS`` on the server's store: its data dir, or ``store`` (a DSN)."""
    where = ["--store", store] if store else ["--data-dir", str(server.data_dir)]
    return subprocess.run(
        chronoq_argv("token", *args, *where), capture_output=True, text=True,
        timeout=CLI_TIMEOUT, env=clean_env(), cwd=server.base_dir,
    )  # fmt: skip


def make_token(server: ServerHandle, user: str, *options: str, store: str | None = None) -> str:
    """A new token for ``user`` (``--allow-shell``, ``--expires ...`` as ``options``)."""
    done = token_cli(server, "create", "--user", user, *options, store=store)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cq_"), done.stdout
    assert lines[0] not in done.stderr  # the secret is printed once, on stdout
    return lines[0]


_SOURCES = itertools.count(10)


def fresh_source() -> str:
    """A loopback source address no other client of this session used: the failure
    limit counts per client address, so each test's failures get their own budget."""
    n = next(_SOURCES)
    return f"127.0.{n // 250 % 250}.{n % 250 + 2}"


def bearer(
    url: str, token: str | None, user_header: str | None = None, *, source: str | None = None
) -> httpx.Client:
    """A client sending ``Authorization: Bearer token`` (and ``X-User-ID`` if given),
    connecting from the loopback address ``source`` when given."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if user_header is not None:
        headers["X-User-ID"] = user_header
    transport = httpx.HTTPTransport(local_address=source) if source else None
    return httpx.Client(base_url=url, headers=headers, timeout=15.0, transport=transport)
