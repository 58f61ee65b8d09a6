"""In-process adapters (for the embedded mode and tests)."""

from chronoq.adapters.memory.coordination import MemoryCoordination
from chronoq.adapters.memory.notify import MemoryNotifier

__all__ = ["MemoryCoordination", "MemoryNotifier"]
