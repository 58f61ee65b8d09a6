"""Numbered schema migrations for PostgreSQL (``sql/NNN_name.sql``).

``apply_migrations`` runs every file not yet recorded in ``schema_migrations``,
in order, in ONE transaction that first takes a transaction-scoped advisory
lock: starters racing on a fresh database queue up behind the first, which
applies everything; the others then find nothing to do. DDL is transactional
in PostgreSQL, so a failing migration leaves no trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

MIGRATION_LOCK_KEY = 0x6368726F6E6F71  # "chronoq": the advisory lock all migrators share

_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)
_LOCK = "SELECT pg_advisory_xact_lock($1)"
_APPLIED = "SELECT version FROM schema_migrations"
_RECORD = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The packaged migrations, by version."""
    folder = resources.files("chronoq.adapters.postgres") / "sql"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append(Migration(version, entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


async def apply_migrations(conn: Any) -> list[int]:
    """Apply what is missing on ``conn`` (an asyncpg connection); return the versions applied."""
    done: list[int] = []
    async with conn.transaction():
        await conn.execute(_LOCK, MIGRATION_LOCK_KEY)
        await conn.execute(_CREATE_TABLE)
        applied = {row[0] for row in await conn.fetch(_APPLIED)}
        for migration in migrations():
            if migration.version in applied:
                continue
            await conn.execute(migration.sql)  # no arguments: may hold several statements
            await conn.execute(_RECORD, migration.version, migration.name)
            done.append(migration.version)
    return done
