"""Queues, priorities and concurrency limits at dispatch (docs/queues.md).

A job names a ``queue`` (``DEFAULT_QUEUE`` unless given) and a ``priority``; each run
copies both from its job when it is created (a fire claimed, a manual trigger, a
retry), so a change to the job applies to its later runs only. Workers claim from a
set of queues, higher priority first, then the oldest ``available_at``.

Concurrency limits (``ClaimLimits``) hold cluster-wide: a claim counts the RUNNING runs
in the store, in its own transaction, and ``Slots`` decides which candidates fit — the
same rule for every store. A run over a limit stays QUEUED; runs of other queues and
users go on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from chronoq.errors import ValidationError

DEFAULT_QUEUE: Final = "default"
MAX_QUEUE_LEN: Final = 64
MIN_PRIORITY: Final = -1000
MAX_PRIORITY: Final = 1000
_QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def check_queue(value: Any, field: str = "queue") -> str:
    """A queue name: 1 to ``MAX_QUEUE_LEN`` of ``A-Z a-z 0-9 _ . -``."""
    if not isinstance(value, str):
        raise ValidationError(f"queue must be a string, got {type(value).__name__}", field=field)
    if _QUEUE_NAME.fullmatch(value) is None:
        shown = value[:80].replace("\x00", "\\0")
        raise ValidationError(
            f"queue must be 1 to {MAX_QUEUE_LEN} characters of A-Z a-z 0-9 _ . -,"
            f" got {shown!r}" + (" (cut)" if len(value) > 80 else ""),
            field=field,
        )
    return value


def check_priority(value: Any, field: str = "priority") -> int:
    """A priority: an integer from ``MIN_PRIORITY`` to ``MAX_PRIORITY`` (``3.0`` is 3, as
    JSON Schema's ``integer`` says; ``true`` is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError("priority must be an integer", field=field)
    if not (math.isfinite(value) and float(value).is_integer()):
        raise ValidationError(f"priority must be an integer, got {value}", field=field)
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValidationError(
            f"priority must be from {MIN_PRIORITY} to {MAX_PRIORITY}, got {value:g}", field=field
        )
    return int(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimLimits:
    """Most RUNNING runs at once, cluster-wide: per queue (absent = no limit) and per user
    (0 = no limit)."""

    per_queue: Mapping[str, int] = field(default_factory=dict)
    per_user: int = 0

    def __post_init__(self) -> None:
        for name, limit in self.per_queue.items():
            check_queue(name, "queue_limits")
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValidationError(
                    f"the limit of queue {name!r} must be an integer >= 1, got {limit!r}",
                    field="queue_limits",
                )
        if isinstance(self.per_user, bool) or not isinstance(self.per_user, int):
            raise ValidationError(
                "user_max_concurrent_runs must be an integer", field="user_max_concurrent_runs"
            )
        if self.per_user < 0:
            raise ValidationError(
                "user_max_concurrent_runs must be >= 0 (0 = no limit)",
                field="user_max_concurrent_runs",
            )

    @property
    def any(self) -> bool:
        return bool(self.per_queue) or self.per_user > 0


NO_LIMITS: Final = ClaimLimits()


class Slots:
    """The free slots of one claim: built from the RUNNING runs counted per (queue, user)
    in the claim's transaction, then ``admit`` takes one per run claimed."""

    def __init__(self, limits: ClaimLimits, running: Iterable[tuple[str, str, int]]) -> None:
        self._limits = limits
        self._queues: dict[str, int] = {}
        self._users: dict[str, int] = {}
        for queue, user, count in running:
            self._queues[queue] = self._queues.get(queue, 0) + count
            self._users[user] = self._users.get(user, 0) + count

    def admit(self, queue: str, user: str) -> bool:
        """Whether one more run of (queue, user) fits; if so it takes the slot."""
        queue_limit = self._limits.per_queue.get(queue)
        if queue_limit is not None and self._queues.get(queue, 0) >= queue_limit:
            return False
        user_limit = self._limits.per_user
        if user_limit and self._users.get(user, 0) >= user_limit:
            return False
        self._queues[queue] = self._queues.get(queue, 0) + 1
        self._users[user] = self._users.get(user, 0) + 1
        return True

    def queue_full(self, queue: str) -> bool:
        limit = self._limits.per_queue.get(queue)
        return limit is not None and self._queues.get(queue, 0) >= limit

    def full_queues(self) -> list[str]:
        """Queues at their limit: a claim need not even look at their runs."""
        return sorted(q for q, n in self._limits.per_queue.items() if self._queues.get(q, 0) >= n)

    def full_users(self) -> list[str]:
        limit = self._limits.per_user
        return sorted(u for u, n in self._users.items() if limit and n >= limit)


def parse_queue_list(text: str) -> frozenset[str] | None:
    """``a,b`` -> the queues a worker claims from; empty -> None (every queue)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        return None
    return frozenset(check_queue(n, "queues") for n in names)


def parse_queue_limits(text: str) -> dict[str, int]:
    """``a=2,b=5`` -> per-queue limits (each ``NAME=N``, N >= 1; a name once)."""
    limits: dict[str, int] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        name, sep, number = item.partition("=")
        name = name.strip()
        if not sep or not number.strip().isdigit():
            raise ValidationError(
                f"a queue limit is NAME=N (N an integer >= 1), got {item[:80]!r}",
                field="queue_limits",
            )
        check_queue(name, "queue_limits")
        if name in limits:
            raise ValidationError(f"queue {name!r} has two limits", field="queue_limits")
        limits[name] = int(number)
    return dict(ClaimLimits(per_queue=limits).per_queue)
