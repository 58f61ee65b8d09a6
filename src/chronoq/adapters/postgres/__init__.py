"""The distributed store: PostgreSQL over asyncpg (``pip install 'chronoq[postgres]'``)."""

from chronoq.adapters.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
