"""Retry policy: exponential backoff with full jitter (DESIGN §5.7)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """``delay(attempt)`` for the wait before attempt ``attempt + 1``.

    Full jitter: uniform in ``[0, min(cap, base * 2 ** (attempt - 1))]``, so
    retries of many jobs that failed together spread out instead of stampeding.
    """

    base_seconds: float = 0.5
    cap_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not (0 <= self.base_seconds < math.inf and 0 <= self.cap_seconds < math.inf):
            raise ValueError("retry base and cap must be finite and >= 0")

    def ceiling(self, attempt: int) -> float:
        """The largest delay after the given (1-based) failed attempt."""
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        return min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt - 1, 62))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A jittered delay in seconds, ``0 <= delay <= ceiling(attempt)``."""
        return (rng or _RNG).uniform(0.0, self.ceiling(attempt))


def attempts_left(attempt: int, max_retries: int, interruptions: int = 0) -> bool:
    """Whether attempt ``attempt`` (1-based) may be followed by another after a job failure.

    Attempts lost to interruptions (``interruptions`` of them before this one) do not
    count: ``max_retries`` counts failures of the job itself.
    """
    return attempt - interruptions < max_retries + 1


DEFAULT_MAX_INTERRUPTIONS = 3
"""How many times one fire may be cut off mid-run by a lost worker before it is DEAD."""


_RNG = random.Random()
