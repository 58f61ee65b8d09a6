"""Schedule policies: the per-job fields that decide what happens to each nominal fire.

Every nominal fire time of a job ends in exactly one recorded outcome: a run,
or a *skip* with a reason (``SkipReason``). This module holds the policies and
what every rule needs (``schedule_of``, ``jitter_offset``, ``first_fire_at``);
the rules are ``domain.claims`` (the picker's claim of a due fire, a resume) and
``domain.starts`` (a run about to start). The stores apply them inside their own
transactions, so every backend decides alike (docs/policies.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from chronoq.domain.schedules import DstGap, DstRepeat, Schedule, parse_schedule


class Overlap(StrEnum):
    """A fire of a recurring job comes due while its previous run is still going."""

    ALLOW = "allow"
    """Start it anyway: runs of the job may overlap."""
    SKIP = "skip"
    """Skip it (reason ``overlap``). The default."""
    BUFFER_ONE = "buffer_one"
    """Start it as soon as the running one ends; a further fire meanwhile is skipped."""
    CANCEL_PREVIOUS = "cancel_previous"
    """Stop the running one (it ends CANCELLED), then start this one."""


class Misfire(StrEnum):
    """Fires that came due while nothing could run them (pickers down, job paused and
    resumed with ``catch_up``, server stopped)."""

    RUN_ONCE = "run_once"
    """Coalesce: one run for the whole backlog (the oldest missed fire); the others are
    skipped (reason ``misfire``). The default."""
    RUN_ALL = "run_all"
    """Run every missed fire no older than ``catch_up_window_seconds``; older ones are
    skipped (``misfire``)."""
    SKIP = "skip"
    """Skip every fire claimed more than ``MISFIRE_GRACE`` after its time (``misfire``)."""


class SkipReason(StrEnum):
    """Why a nominal fire has no run."""

    OVERLAP = "overlap"
    PAUSED = "paused"
    MISFIRE = "misfire"
    MISSED_DEADLINE = "missed_deadline"
    END_REACHED = "end_reached"


TICK: Final = timedelta(microseconds=1)
"""The resolution of stored instants: "at or after t" is "after t - TICK"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Policies:
    """A job's schedule policies (all optional in the API; these are the defaults)."""

    overlap: Overlap = Overlap.SKIP
    misfire: Misfire = Misfire.RUN_ONCE
    catch_up_window_seconds: float | None = None
    """``run_all`` only: how far back missed fires still run (None: ``DEFAULT_CATCH_UP_WINDOW``)."""
    start_deadline_seconds: float | None = None
    """A fire (attempt 1) that would start later than this after its time is skipped
    (``missed_deadline``). None: no deadline."""
    jitter_seconds: float = 0.0
    """Each fire starts up to this much after its nominal time, by a spread fixed per
    fire (``jitter_offset``), so a retry or a failover keeps the same instant."""
    start_at: datetime | None = None
    """No fire before this instant."""
    end_at: datetime | None = None
    """No fire after this instant."""
    max_fires: int | None = None
    """At most this many nominal fires (runs and skips alike); then the schedule ends."""
    dst_gap: DstGap = DstGap.AUTO
    """A fixed wall time that DST skips: fire at the transition (``shift``) or not (``skip``)."""
    dst_repeat: DstRepeat = DstRepeat.AUTO
    """A wall time that DST repeats: fire at the ``first`` occurrence, or at ``both``."""


def schedule_of(cron_schedule: str, timezone: str | None, policies: Policies) -> Schedule:
    """A job's schedule, read with its DST policy (every caller goes through here)."""
    return parse_schedule(
        cron_schedule, timezone, dst_gap=policies.dst_gap, dst_repeat=policies.dst_repeat
    )


DEFAULT_POLICIES: Final = Policies()

POLICY_NAMES: Final = tuple(f.name for f in fields(Policies))
"""The policy fields, in declaration order: the API, client and CLI take each by name, and
the stores keep one column each, in this order (``policies_from_values``)."""

_INSTANTS: Final = frozenset({"start_at", "end_at"})
_ENUMS: Final = {"overlap": Overlap, "misfire": Misfire, "dst_gap": DstGap, "dst_repeat": DstRepeat}


def policies_from_values(
    values: Sequence[Any], instant: Callable[[Any], datetime | None]
) -> Policies:
    """``Policies`` from stored column values in ``POLICY_NAMES`` order; ``instant`` turns
    a store's stored instant into a datetime (each store keeps instants its own way)."""
    given: dict[str, Any] = {}
    for name, value in zip(POLICY_NAMES, values, strict=True):
        kind = _ENUMS.get(name)
        given[name] = kind(value) if kind else instant(value) if name in _INSTANTS else value
    return Policies(**given)


def policy_column_values(p: Policies, instant: Callable[[str, Any], Any]) -> tuple[Any, ...]:
    """``p``'s column values in ``POLICY_NAMES`` order: enums by value, instants through
    ``instant(name, value)`` (the store's own form)."""
    out: list[Any] = []
    for name in POLICY_NAMES:
        value = getattr(p, name)
        out.append(
            value.value if name in _ENUMS else instant(name, value) if name in _INSTANTS else value
        )
    return tuple(out)


def jitter_offset(job_id: str, scheduled_for: datetime, jitter_seconds: float) -> timedelta:
    """The fixed spread of one fire: a hash of (job, fire) into ``[0, jitter_seconds)``,
    microsecond-exact, so every picker, retry and failover computes the same instant."""
    if jitter_seconds <= 0:
        return timedelta(0)
    key = f"{job_id}|{int(scheduled_for.timestamp() * 1_000_000)}".encode()
    fraction = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
    return timedelta(microseconds=int(fraction * jitter_seconds * 1_000_000))


def first_fire_at(
    *,
    cron_schedule: str | None,
    timezone: str | None,
    next_fire_at: datetime | None,
    policies: Policies,
    now: datetime,
) -> datetime | None:
    """A new (or rescheduled) job's first nominal fire: ``next_fire_at`` if given (a
    one-shot's time, or an explicit first fire), else the schedule's first fire after
    ``now`` and not before ``start_at``; None if that is past ``end_at``."""
    if next_fire_at is not None:
        first: datetime | None = next_fire_at
    elif cron_schedule is None:
        first = max(now, policies.start_at) if policies.start_at is not None else now
    else:
        schedule = schedule_of(cron_schedule, timezone, policies)
        if policies.start_at is not None and policies.start_at > now:
            # An interval schedule starts at ``start_at`` and keeps that cadence.
            start = policies.start_at
            first = start if interval_of(schedule) else schedule.next_after(start - TICK)
        else:
            first = schedule.next_after(now)
    if first is None or (policies.end_at is not None and first > policies.end_at):
        return None
    if policies.max_fires is not None and policies.max_fires < 1:
        return None
    return first


def interval_of(schedule: Schedule | None) -> timedelta | None:
    """An ``@every`` schedule's interval (its fires are anchored arithmetic); else None."""
    interval = getattr(schedule, "interval", None)
    return interval if isinstance(interval, timedelta) and interval > timedelta(0) else None
