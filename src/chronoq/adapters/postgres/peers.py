"""Whether any other process listens for hints: ``PostgresNotifier`` skips NOTIFYs nobody
else would hear.

Every notifier LISTENs on one more channel, ``<prefix>_peers``. On connecting it says
``hello`` there; a notifier that hears a hello answers ``here``; every notifier says
``here`` once per ``keepalive`` anyway. A peer not heard from for ``FORGET_AFTER``
keep-alives is gone. Until its first answers can have come (``discovery`` seconds after
connecting) a notifier assumes it has peers, so a hint published at start-up is sent.

Why: with every role in one process (``chronoq up --store``) each hint is delivered inside
``publish`` already, and its NOTIFY was a committed transaction of its own (an fsync)
that nobody heard: at light load, 3 of the 7 write transactions per job. A hint a new
process misses is only a hint: every role polls the store (``Hints are hints``, DESIGN).
"""

from __future__ import annotations

import time
from collections.abc import Callable

CHANNEL = "_peers"
"""Appended to the notifier's prefix (``chronoq__peers``); not a role's channel."""
HELLO = "hello"
HERE = "here"
FORGET_AFTER = 2.5
"""Keep-alive intervals without a word from a peer before it counts as gone."""


class Peers:
    """The other notifiers heard from lately (by server process id)."""

    def __init__(
        self, keepalive: float, discovery: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._forget = FORGET_AFTER * keepalive
        self._discovery = discovery
        self._clock = clock
        self._seen: dict[int, float] = {}
        self._assume_until = 0.0

    def connected(self) -> None:
        """This notifier (re)connected and said hello: assume peers until they can answer."""
        self._assume_until = self._clock() + self._discovery

    def heard(self, pid: int, message: str) -> bool:
        """A word from another notifier; True if it is a hello (it wants an answer)."""
        self._seen[pid] = self._clock()
        return message == HELLO

    def any(self) -> bool:
        """Whether a NOTIFY could be heard by another process."""
        now = self._clock()
        if now < self._assume_until:
            return True
        for pid in [p for p, at in self._seen.items() if now - at > self._forget]:
            del self._seen[pid]
        return bool(self._seen)
