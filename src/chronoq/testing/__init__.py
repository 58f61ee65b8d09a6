"""Test support for Chronoq and for code built on it.

* ``FakeClock`` — wall and monotonic time that move only when the test says.
* In-memory adapters of every port (``MemoryStore``, ``MemorySubmissionLog``,
  and ``chronoq.adapters.memory``'s coordination and notifier), which pass the
  same contract suites as the real ones.
* Builders that run any role in-process on those adapters (``chronoq.testing.roles``).
"""

from chronoq.adapters.memory.runqueue import MemoryRunQueue as MemoryRunQueue
from chronoq.adapters.memory.store import MemoryStore
from chronoq.adapters.memory.submissions import MemorySubmissionLog
from chronoq.testing.clock import FakeClock, settle

__all__ = ["FakeClock", "MemoryStore", "MemorySubmissionLog", "settle"]
