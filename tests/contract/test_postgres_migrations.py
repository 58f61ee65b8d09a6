"""PostgreSQL only: the migrations produce the declared schema, once, even when raced."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from chronoq.adapters.postgres import PostgresStore
from chronoq.adapters.postgres.migrations import apply_migrations, migrations

from .conftest import CONNECT_TIMEOUT, create_database, drop_database, dsn_for

TABLES = {"jobs", "job_runs", "schema_migrations"}
"""The store's tables (later migrations may add others, e.g. coordination's)."""

COLUMNS = {
    "jobs": {
        "job_id": "uuid",
        "seq": "bigint",
        "user_id": "text",
        "project_id": "text",
        "payload": "text",
        "payload_ref": "text",
        "payload_size": "integer",
        "cron_schedule": "text",
        "timezone": "text",
        "next_fire_at": "timestamp with time zone",
        "shard_id": "integer",
        "status": "text",
        "max_retries": "integer",
        "timeout_seconds": "double precision",
        "created_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
    },
    "job_runs": {
        "run_id": "uuid",
        "job_id": "uuid",
        "user_id": "text",
        "scheduled_for": "timestamp with time zone",
        "attempt": "integer",
        "status": "text",
        "triggered_at": "timestamp with time zone",
        "available_at": "timestamp with time zone",
        "started_at": "timestamp with time zone",
        "completed_at": "timestamp with time zone",
        "output": "text",
        "exit_code": "integer",
        "worker_id": "text",
        "error_message": "text",
        "lease_owner": "text",
        "lease_until": "timestamp with time zone",
    },
    "schema_migrations": {
        "version": "integer",
        "name": "text",
        "applied_at": "timestamp with time zone",
    },
}

NOT_NULL = {
    "jobs": {
        "job_id", "seq", "user_id", "project_id", "payload_size", "shard_id", "status",
        "max_retries", "created_at", "updated_at",
    },
    "job_runs": {
        "run_id", "job_id", "user_id", "scheduled_for", "attempt", "status", "triggered_at",
        "available_at",
    },
}  # fmt: skip

INDEXES = {
    # name: (table, unique, fragment of the definition)
    "jobs_pkey": ("jobs", True, "(job_id)"),
    "jobs_due": ("jobs", False, "(next_fire_at) WHERE (next_fire_at IS NOT NULL)"),
    "jobs_shard_due": ("jobs", False, "(shard_id, next_fire_at) WHERE (next_fire_at IS NOT NULL)"),
    "jobs_user": ("jobs", False, "(user_id, seq)"),
    "job_runs_pkey": ("job_runs", True, "(run_id)"),
    "job_runs_fire_attempt": ("job_runs", True, "(job_id, scheduled_for, attempt)"),
    "runs_one_terminal_per_fire": ("job_runs", True, "(job_id, scheduled_for) WHERE"),
    "runs_queued": ("job_runs", False, "(available_at) WHERE (status = 'QUEUED'::text)"),
    "runs_running": ("job_runs", False, "(lease_until) WHERE (status = 'RUNNING'::text)"),
    "schema_migrations_pkey": ("schema_migrations", True, "(version)"),
}
TERMINAL = ("COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED", "DEAD", "SKIPPED")


@pytest.fixture
async def conn(pg_database: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        yield connection
    finally:
        await connection.close()


async def _schema(conn: Any) -> dict[str, Any]:
    tables = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    columns = await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
    )
    indexes = await conn.fetch(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        " ORDER BY indexname"
    )
    return {
        "tables": {r["table_name"] for r in tables},
        "columns": [tuple(r) for r in columns],
        "indexes": {r["indexname"]: (r["tablename"], r["indexdef"]) for r in indexes},
    }


async def test_migrations_produce_the_declared_schema(conn: Any) -> None:
    schema = await _schema(conn)
    assert schema["tables"] >= TABLES
    for table, expected in COLUMNS.items():
        found = {c[1]: c[2] for c in schema["columns"] if c[0] == table}
        assert found == expected, table
    for table, required in NOT_NULL.items():
        nullable = {c[1] for c in schema["columns"] if c[0] == table and c[3] == "YES"}
        assert set(COLUMNS[table]) - nullable == required, table
    ours = {name for name, (table, _) in schema["indexes"].items() if table in TABLES}
    assert ours == set(INDEXES)
    for name, (table, unique, fragment) in INDEXES.items():
        found_table, definition = schema["indexes"][name]
        assert found_table == table, name
        assert definition.startswith("CREATE UNIQUE INDEX" if unique else "CREATE INDEX"), name
        assert fragment in definition, (name, definition)
    terminal = schema["indexes"]["runs_one_terminal_per_fire"][1]
    assert all(f"'{s}'" in terminal for s in TERMINAL)
    versions = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in versions] == [
        (m.version, m.name) for m in migrations()
    ]


async def test_migrations_are_numbered_without_gaps() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert all(m.name.endswith(".sql") and m.name[:3].isdigit() for m in found)


async def test_applying_migrations_again_is_a_no_op(conn: Any, pg_database: str) -> None:
    before = await _schema(conn)
    recorded = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")

    assert await apply_migrations(conn) == []
    store = PostgresStore(pg_database)
    await store.start()
    await store.close()

    assert await _schema(conn) == before
    assert await conn.fetch("SELECT * FROM schema_migrations ORDER BY version") == recorded


async def test_racing_starters_on_an_empty_database_migrate_once(pg_template: str) -> None:
    name = f"chronoq_contract_empty_{uuid.uuid4().hex[:16]}"
    await create_database(name)
    stores = [PostgresStore(dsn_for(name)) for _ in range(4)]
    try:
        await asyncio.gather(*(s.start() for s in stores))
        conn = await asyncpg.connect(dsn_for(name), timeout=CONNECT_TIMEOUT)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
            assert sorted(versions) == [m.version for m in migrations()]
            assert (await _schema(conn))["tables"] >= TABLES
        finally:
            await conn.close()
    finally:
        await asyncio.gather(*(s.close() for s in stores))
        await drop_database(name)
