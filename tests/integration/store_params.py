"""``server`` on each store: a module-scoped fixture for the issue 9 API tests that runs
them on SQLite (embedded) and on PostgreSQL (a database of its own, dropped afterwards;
skipped when the test PostgreSQL is not reachable)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.postgres import create_database, drop_database

from .auth_support import postgres_problem

if TYPE_CHECKING:
    from .conftest import ServerFactory, ServerHandle

ADMIN_DSN = os.environ.get(
    "CHRONOQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"], name="server")
def store_server(
    request: pytest.FixtureRequest, module_server_factory: ServerFactory
) -> Iterator[ServerHandle]:
    if request.param == "sqlite":
        yield module_server_factory(name="sqlite")
        return
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    name = f"api_{uuid.uuid4().hex[:10]}"
    dsn = create_database(ADMIN_DSN, name)
    handle = module_server_factory("--store", dsn, name="postgres")
    try:
        yield handle
    finally:
        handle.dispose()
        drop_database(ADMIN_DSN, name)
