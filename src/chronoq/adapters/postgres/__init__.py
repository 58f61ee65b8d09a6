"""The distributed backends over PostgreSQL and asyncpg (``pip install 'chronoq[postgres]'``):
the store, LISTEN/NOTIFY wake-ups, and leases for leadership and shard assignment."""

from chronoq.adapters.postgres.coordination import PostgresCoordination
from chronoq.adapters.postgres.notify import PostgresNotifier
from chronoq.adapters.postgres.store import PostgresStore
from chronoq.adapters.postgres.submissions import PostgresSubmissionLog

__all__ = ["PostgresCoordination", "PostgresNotifier", "PostgresStore", "PostgresSubmissionLog"]
