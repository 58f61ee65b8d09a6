"""Numbered schema migrations for SQLite, applied at start-up (embedded mode).

Each ``sql/NNN_name.sql`` runs once, in order, inside the store thread's
transaction, and is recorded in ``schema_migrations``. Files are split on
``;``, so a migration must not put one inside a comment or a string.
"""

from __future__ import annotations

import sqlite3
from importlib import resources


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations not applied yet (a store thread operation)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    folder = resources.files("chronoq.adapters.sqlite") / "sql"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        version = int(entry.name.split("_", 1)[0])
        if version in applied:
            continue
        for statement in entry.read_text().split(";"):
            if statement.strip() and not _only_comments(statement):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s'))",
            (version,),
        )


def _only_comments(statement: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in statement.splitlines())
