"""A token bucket: how many fires a picker may dispatch now (DESIGN §5.8).

After an outage thousands of fires can be due at once; dispatching them at a
capped rate lets the backlog drain without a stampede on workers and the store.
Pure: the caller passes the monotonic time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; ``rate = inf`` never limits."""

    rate: float
    burst: float
    _tokens: float = field(init=False)
    _at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not self.rate > 0 or not self.burst >= 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._tokens = self.burst

    def available(self, now: float) -> int:
        """Whole tokens available at ``now`` (refilled since the last call)."""
        if math.isinf(self.rate):
            return 2**31
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return int(self._tokens)

    def take(self, count: int) -> None:
        if not math.isinf(self.rate):
            self._tokens -= count

    def wait_for_one(self) -> float:
        """Seconds until one token is available (0 if one is)."""
        if math.isinf(self.rate) or self._tokens >= 1:
            return 0.0
        return (1 - self._tokens) / self.rate
