"""Per-user limits (issue 9.9): active jobs, and fires per rolling minute (docs/limits.md).

Both are counted in the store, inside the transaction that would exceed them, so they
hold across any number of api processes and pickers:

* **Active jobs** — a user's jobs not in a terminal state (``JOB_TERMINAL``). A
  submission that would take the user over ``max_active_jobs`` is refused whole
  (``LimitExceededError``, HTTP 429); a replayed idempotency key is not a new job.
* **Fires per minute** — runs of attempt 1 (scheduled fires and manual triggers; not
  retries) whose ``triggered_at`` is within the last ``FIRE_WINDOW``. The picker claims
  a user's due fires only while the user has budget (``FireBudget``); the rest *wait*
  (``next_fire_at`` untouched) while other users' fires are claimed. A manual trigger
  over the limit is refused (429).

A fire deferred by its user's own limit is not a misfire: ``Deferrals`` remembers since
when a user has been held back, and the claim judges a late fire as if claimed at
``max(due, held_since)`` — lateness from before the user was held back still counts
(an outage), the time spent waiting for budget does not.

``0`` means unlimited for both, the default (existing deployments keep their behaviour).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from chronoq.domain.claims import ClaimPlan
from chronoq.errors import LimitExceededError

FIRE_WINDOW: Final = timedelta(seconds=60)
"""The rolling window of ``max_fires_per_minute``."""

ACTIVE_RETRY_AFTER: Final = 30
"""``Retry-After`` seconds of an active-jobs refusal: the store cannot know when one of the
user's jobs will end (a recurring one never does by itself), so a fixed, modest wait."""

TOO_MANY_ACTIVE_JOBS: Final = "too_many_active_jobs"
TOO_MANY_FIRES: Final = "too_many_fires"

_DEFERRAL_MEMORY: Final = timedelta(days=1)
"""A user held back longer ago than this is forgotten (bounds ``Deferrals``)."""
HELD_CHECKED: Final = 500
"""Held-back users a claim counts up front to leave out of its selects."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserLimits:
    """The per-user limits of a deployment; each applies to every user alike. 0: none."""

    max_active_jobs: int = 0
    max_fires_per_minute: int = 0

    def __post_init__(self) -> None:
        for name in ("max_active_jobs", "max_fires_per_minute"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def check_active(new_by_user: Mapping[str, int], active: Mapping[str, int], limit: int) -> None:
    """Refuse (``LimitExceededError``) if some user's active jobs plus their new ones would
    exceed ``limit`` (> 0). ``new_by_user``: the non-terminal jobs being inserted."""
    for user, new in new_by_user.items():
        have = active.get(user, 0)
        if new and have + new > limit:
            raise LimitExceededError(
                f"user {user!r} may have at most {limit} active jobs (not completed, failed or"
                f" cancelled); they have {have} and this submission adds {new}: nothing was"
                " stored. Cancel or purge jobs, or wait for some to finish",
                code=TOO_MANY_ACTIVE_JOBS,
                retry_after=ACTIVE_RETRY_AFTER,
            )


def fires_retry_after(oldest: datetime | None, now: datetime) -> int:
    """Seconds until the oldest fire counted in the window leaves it (at least 1)."""
    if oldest is None:
        return 1
    return max(1, math.ceil((oldest + FIRE_WINDOW - now).total_seconds()))


def check_trigger(used: int, oldest: datetime | None, limit: int, now: datetime) -> None:
    """Refuse a manual fire when the user has had ``limit`` (> 0) fires in the window."""
    if used >= limit:
        raise LimitExceededError(
            f"at most {limit} fires per minute per user; this user has had {used} in the last"
            " 60 seconds: the manual fire was not made",
            code=TOO_MANY_FIRES,
            retry_after=fires_retry_after(oldest, now),
        )


@dataclass(slots=True)
class FireBudget:
    """One claim's per-user allowance of fires (``limit`` > 0): counted once per user
    (``count``), spent as fires are planned, users out of budget ``blocked``."""

    limit: int
    left: dict[str, int] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    """Users with no budget left in this claim: the store's next select leaves them out."""
    deferred: set[str] = field(default_factory=set)
    """Users with a due fire this claim did not take."""
    served: set[str] = field(default_factory=set)
    """Users this claim took fires of."""
    busy: set[str] = field(default_factory=set)
    """Users left for the next claim because another one is counting them (PostgreSQL)."""
    behind: set[str] = field(default_factory=set)
    """Users with a job this claim advanced to a fire that is due already."""
    deferred_jobs: int = 0
    """Due jobs this claim left waiting (metrics)."""
    held_out: bool = False
    """Users out of budget were left out of this claim's selects (``hold_out``)."""

    @property
    def waiting(self) -> bool:
        """Whether due fires may be waiting for their users' budget after this claim."""
        return self.held_out or self.deferred_jobs > 0

    def uncounted(self, users: Iterable[str]) -> list[str]:
        return sorted({u for u in users if u not in self.left})

    def count(
        self, users: Iterable[str], used: Mapping[str, int], busy: Iterable[str] = ()
    ) -> None:
        """Record the fires ``users`` had in the window (``used``; absent: none). ``busy``:
        users another claim is counting right now (PostgreSQL): left for the next claim,
        without being held back."""
        for user in users:
            self.left[user] = self.limit - used.get(user, 0)
            if self.left[user] <= 0:
                self.blocked.add(user)
        for user in busy:
            self.left[user] = 0
            self.blocked.add(user)
            self.busy.add(user)

    def hold_out(self, users: Iterable[str], used: Mapping[str, int]) -> list[str]:
        """Users held back by earlier claims that are still out of budget (``used``: their
        fires in the window): the claim's first select leaves them out, so their backlog
        costs nothing. Returns them, sorted. The others are not recorded: they are counted
        like any user when their jobs come up (under the store's lock, if it has one)."""
        out = sorted(u for u in set(users) if used.get(u, 0) >= self.limit)
        for user in out:
            self.left[user] = 0
            self.blocked.add(user)
        self.held_out = self.held_out or bool(out)
        return out

    def admit(self, user: str) -> bool:
        """Whether a due job of ``user`` may be claimed now (call ``spend`` after)."""
        if self.left[user] > 0:
            return True
        self.blocked.add(user)
        if user not in self.busy:
            self.deferred.add(user)
            self.deferred_jobs += 1
        return False

    def spend(self, user: str, plan: ClaimPlan, horizon: datetime) -> None:
        """A claimed job's plan made its runs: one, or a ``run_all`` catch-up of up to
        ``claims.RUN_ALL_BATCH`` (that may take the user below zero — they wait longer).
        A job whose next fire is due still (a backlog) keeps its user ``behind``."""
        self.served.add(user)
        self.left[user] -= len(plan.runs)
        if self.left[user] <= 0:
            self.blocked.add(user)
        if plan.next_fire_at is not None and plan.next_fire_at <= horizon:
            self.behind.add(user)


@dataclass(slots=True)
class Deferrals:
    """Since when each user has been held back by their fires limit (per store object).

    Kept in the store adapter's memory, not in the database: a user's due jobs in a shard
    are claimed by the one picker owning the shard, which is the one that deferred them.
    After a restart or a shard move the memory is gone, and a deferred fire is judged by
    its plain lateness (the misfire policy): documented in docs/limits.md."""

    since: dict[str, datetime] = field(default_factory=dict)

    def claim_instant(self, user: str, due: datetime, now: datetime) -> datetime:
        """The instant to plan a claim of ``user``'s fire due at ``due`` at: ``now``, less
        the time the user spent held back by their own limit."""
        held = self.since.get(user)
        if held is None:
            return now
        return min(now, max(due, held))

    def held(self) -> list[str]:
        """Users held back now, most recent first, at most ``HELD_CHECKED`` (one count)."""
        recent = sorted(self.since.items(), key=lambda item: item[1], reverse=True)
        return [user for user, _at in recent[:HELD_CHECKED]]

    def update(self, budget: FireBudget, now: datetime) -> None:
        """After a claim: users it deferred are held back from now (if not already);
        users it served and left with nothing due are no longer held back (a user still
        working through a backlog stays held back: its fires are still late because of
        the limit)."""
        for user in budget.deferred:
            self.since.setdefault(user, now)
        for user in budget.served - budget.deferred - budget.behind:
            self.since.pop(user, None)
        if self.since and len(self.since) > 1000:
            horizon = now - _DEFERRAL_MEMORY
            for user in [u for u, at in self.since.items() if at < horizon]:
                del self.since[user]


CLAIM_ROUNDS: Final = 8
"""Selects one claim makes at most while users run out of budget: each round leaves out
the users the previous ones found exhausted, so a noisy user's backlog at the head of
the due index cannot hide another user's fire (the picker claims again soon anyway)."""
