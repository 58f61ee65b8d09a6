"""The embedded store: SQLite in WAL mode, driven by one writer thread."""

from chronoq.adapters.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
