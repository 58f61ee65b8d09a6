"""In-process adapters (for the embedded mode and tests)."""

from chronoq.adapters.memory.coordination import MemoryCoordination
from chronoq.adapters.memory.notify import MemoryNotifier
from chronoq.adapters.memory.store import MemoryStore
from chronoq.adapters.memory.store_tables import IntegrityError
from chronoq.adapters.memory.submissions import MemorySubmissionLog

__all__ = [
    "IntegrityError",
    "MemoryCoordination",
    "MemoryNotifier",
    "MemoryStore",
    "MemorySubmissionLog",
]
