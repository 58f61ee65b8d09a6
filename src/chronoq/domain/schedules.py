"""Recurring schedules: cron (5 or 6 fields, seconds first), descriptors, ``@every``.

``parse_schedule(expression, timezone)`` turns a user's expression into a
``Schedule`` whose ``next_after(t)`` gives the first fire strictly after ``t``,
as an aware UTC datetime (``None`` when there is none). Parsed schedules are
immutable and cached, so calling ``parse_schedule`` on a hot path is cheap.

Forms (as the seed's robfig/cron parser reads them):

* ``m h dom mon dow`` (5 fields, second 0) or ``s m h dom mon dow`` (6 fields,
  SECONDS FIRST: ``*/2 * * * * *`` fires on every even second). ``?`` means
  ``*``; month and day names (``JAN``, ``MON``) and cronsim's ``L``, ``LW`` and
  ``#`` forms are accepted. When both day-of-month and day-of-week are
  restricted a day matches either (Vixie cron); when one starts with ``*``
  both must match.
* ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
  (``@midnight``), ``@hourly``.
* ``@every <Go duration>`` (``@every 2s``, ``@every 1h30m``), at least 1 s.
  Anchored: ``next_after(t) == t + interval``; the caller passes the last
  *scheduled* fire, so fires do not drift. Absolute time; the timezone is
  irrelevant.

Timezones and DST (DESIGN §5.9). Cron fields are matched against the wall
clock of the schedule's IANA timezone (UTC by default); results are UTC.

* **Fixed-time** schedules — the hour field does not start with ``*`` (``30 2
  * * *``, ``0 9-17 * * *``, ``@daily``): a wall time that does not exist
  (spring-forward gap) fires ONCE, at the transition instant (America/New_York
  2026-03-08 ``30 2 * * *`` -> 07:00 UTC = 03:00 EDT; several gap times, and a
  real fire at that same instant, collapse into that one fire); a wall time that
  occurs twice (fall-back overlap) fires ONCE, at its first occurrence.
* **Interval-like** schedules — the hour field is ``*`` or ``*/n`` (``0 * * *
  *``, ``*/10 * * * * *``, ``@hourly``): they follow absolute time, i.e. they
  fire at every instant whose local wall clock matches the fields. In a gap
  they have no fires for the missing wall times; in an overlap they fire in
  both passes (``0 * * * *`` fires at 01:00 EDT and again at 01:00 EST).

``next_after`` never returns a time ``<= after`` and always terminates: a cron
search looks at most 400 years ahead (the Gregorian cycle, so an expression
that parses fires within any such window) and ``None`` only comes back when the
answer would pass year 9999. Expressions that can never fire (``0 0 30 2 *``)
are rejected at parse time.

cronsim parses and validates the fields and decides which days match; the
search itself is ours, over cronsim's parsed field sets, in naive wall time,
so DST is handled here and not by cronsim (which either ticks in UTC or
applies Debian-cron fixups to 5-field expressions only). The expression's text
(descriptors, fields, messages) is ``cron_text``'s; the timezones are ``zones``'.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from functools import lru_cache
from typing import Final, Protocol

from cronsim import CronSim, CronSimError

from chronoq.domain.cron_text import (
    DESCRIPTORS,
    FIELD,
    cronsim_spec,
    every_interval,
    explain_cron_error,
    normalise_cron,
)
from chronoq.domain.zones import (
    UTC_NAMES,
    load_zone,
    transition_instant,
    wall_offsets,
)
from chronoq.errors import ScheduleError

__all__ = [
    "CronSchedule",
    "DstGap",
    "DstRepeat",
    "EverySchedule",
    "Schedule",
    "parse_schedule",
]

_SEARCH_YEARS: Final = 400
_ONE_SECOND: Final = timedelta(seconds=1)


class Schedule(Protocol):
    """A parsed recurring schedule."""

    @property
    def expression(self) -> str:
        """The expression as the user gave it, stripped."""
        ...

    @property
    def timezone(self) -> str | None:
        """The IANA timezone the fields are read in; ``None`` means UTC."""
        ...

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire strictly after ``after``, as an aware UTC datetime.

        ``after`` must be timezone-aware (any zone), else ``ValueError``.
        ``None`` when the schedule has no later fire.
        """
        ...


class DstGap(StrEnum):
    """A wall time the fields ask for does not exist that day (spring forward)."""

    AUTO = "auto"
    """``shift`` for fixed-time schedules, ``skip`` for interval-like ones (DESIGN §5.9)."""
    SHIFT = "shift"
    """Fire once, at the transition instant."""
    SKIP = "skip"
    """No fire for the missing wall time."""


class DstRepeat(StrEnum):
    """A wall time the fields ask for occurs twice that day (fall back)."""

    AUTO = "auto"
    """``first`` for fixed-time schedules, ``both`` for interval-like ones (DESIGN §5.9)."""
    FIRST = "first"
    """Fire once, at the first occurrence."""
    BOTH = "both"
    """Fire at both occurrences (absolute time: the hour really happens twice)."""


def parse_schedule(
    expression: str,
    timezone: str | None = None,
    *,
    dst_gap: DstGap = DstGap.AUTO,
    dst_repeat: DstRepeat = DstRepeat.AUTO,
) -> Schedule:
    """Parse a cron expression, descriptor or ``@every`` into a ``Schedule``.

    ``timezone`` is an IANA key (``Europe/Berlin``); ``None`` means UTC.
    ``dst_gap`` and ``dst_repeat`` choose what happens to wall times that DST
    skips or repeats (cron schedules in a zone with DST; ``auto``: the rules of
    the module docstring). Raises ``ScheduleError`` (a ``ValidationError``) with
    a user-facing message for an invalid expression or an unknown timezone.
    Results are cached.
    """
    if not isinstance(expression, str):
        raise ScheduleError(f"invalid {FIELD}: expected a string", field=FIELD)
    if timezone is not None and not isinstance(timezone, str):
        raise ScheduleError("invalid timezone: expected a string", field="timezone")
    return _parse_cached(expression, timezone, DstGap(dst_gap), DstRepeat(dst_repeat))


@lru_cache(maxsize=4096)
def _parse_cached(
    expression: str, timezone: str | None, dst_gap: DstGap, dst_repeat: DstRepeat
) -> Schedule:
    text = expression.strip()
    zone = None if timezone is None or timezone in UTC_NAMES else load_zone(timezone)
    if not text:
        raise ScheduleError(f"invalid {FIELD} {text!r}: empty", field=FIELD)
    if text.startswith("@"):
        head, *rest_ = text.split(maxsplit=1)
        head, rest = head.lower(), "".join(rest_)
        if head == "@every":
            return EverySchedule(text, timezone, every_interval(text, rest))
        spec = DESCRIPTORS.get(head)
        if spec is None:
            known = ", ".join([*DESCRIPTORS, "@every <duration>"])
            raise ScheduleError(
                f"invalid {FIELD} {text!r}: unknown descriptor (expected one of {known})",
                field=FIELD,
            )
        if rest.strip():
            raise ScheduleError(f"invalid {FIELD} {text!r}: {head} takes no arguments", field=FIELD)
        parts = spec.split()
    else:
        parts = normalise_cron(text)
    spec = cronsim_spec(parts)
    fields = _CronFields(text, parts, spec)
    fixed_time = not parts[2].startswith("*")
    shift = dst_gap is DstGap.SHIFT or (dst_gap is DstGap.AUTO and fixed_time)
    once = dst_repeat is DstRepeat.FIRST or (dst_repeat is DstRepeat.AUTO and fixed_time)
    return CronSchedule(text, timezone, spec, fixed_time, fields, zone, shift, once)


@dataclass(frozen=True, slots=True)
class EverySchedule:
    """``@every <interval>``: fires every ``interval`` of absolute time, anchored on ``after``."""

    expression: str
    timezone: str | None
    interval: timedelta

    def next_after(self, after: datetime) -> datetime | None:
        """``after + interval``, added in UTC (anchored: pass the last scheduled fire, not "now").

        Added in UTC, not in ``after``'s zone: Python's aware arithmetic is wall-clock.
        ``None`` past year 9999.
        """
        try:
            return _utc(after) + self.interval
        except OverflowError:
            return None


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression read in ``timezone``; build it with ``parse_schedule``.

    ``spec`` is the 6-field, seconds-first form that is evaluated; ``fixed_time``
    says which DST rules ``auto`` picks (see the module docstring); ``gap_shift`` and
    ``repeat_once`` are the rules in force.
    """

    expression: str
    timezone: str | None
    spec: str
    fixed_time: bool
    _fields: _CronFields = field(repr=False, compare=False)
    _zone: tzinfo | None = field(repr=False, compare=False)
    gap_shift: bool = True
    """A nonexistent wall time fires at the transition (else: no fire)."""
    repeat_once: bool = True
    """A repeated wall time fires once, in the first pass (else: in both)."""

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire strictly after ``after`` (aware) as UTC, or ``None`` past year 9999."""
        a = _utc(after)
        try:
            if self._zone is None:
                wall = self._fields.next_wall(a.replace(tzinfo=None))
                return None if wall is None else wall.replace(tzinfo=UTC)
            return self._next_in_zone(a, self._zone)
        except OverflowError:
            return None

    def explain(self) -> str:
        """The fields in English (cronsim's wording), without the timezone."""
        return self._fields.explain()

    def matches_wall(self, wall: datetime) -> bool:
        """Whether naive wall time ``wall`` is one the fields ask for (a fire moved to a
        DST transition is not)."""
        whole = wall.replace(microsecond=0, tzinfo=None, fold=0)
        return self._fields.next_wall(whole - _ONE_SECOND) == whole

    def _next_in_zone(self, a: datetime, zone: tzinfo) -> datetime | None:
        local = a.astimezone(zone)
        cursor = local.replace(tzinfo=None, fold=0)
        before, after_ = wall_offsets(cursor, zone)
        if before > after_:  # `a` lies in a fall-back overlap
            start = transition_instant(cursor - before, cursor - after_, zone).replace(tzinfo=None)
            overlap_start, overlap_end = start + after_, start + before
            if local.fold == 1 and self.repeat_once:
                # Second pass: fixed-time fires in the overlap already happened.
                cursor = overlap_end - _ONE_SECOND
            elif local.fold == 0 and not self.repeat_once:
                # First pass: the second pass (wall times before `cursor`) comes first.
                found = self._first_pass_next(cursor, overlap_start, overlap_end, before, after_)
                if found is not None:
                    return found
        for _ in range(64):  # each turn returns or moves past a gap; 2 turns are typical
            wall = self._fields.next_wall(cursor)
            if wall is None:
                return None
            before, after_ = wall_offsets(wall, zone)
            if before == after_:
                fire = _as_utc(wall, before)
            elif before > after_:  # ambiguous: first pass, and the second for interval-like
                fire = _as_utc(wall, before)
                if fire <= a and not self.repeat_once:
                    fire = _as_utc(wall, after_)
            else:  # nonexistent: fixed-time fires at the transition, interval-like skips
                start = transition_instant(wall - after_, wall - before, zone)
                if self.gap_shift:
                    fire = start
                else:
                    cursor = start.replace(tzinfo=None) + after_ - _ONE_SECOND
                    continue
            if fire > a:
                return fire
            cursor = wall
        raise RuntimeError(f"next_after({a}) did not converge for {self!r}")

    def _first_pass_next(
        self,
        cursor: datetime,
        overlap_start: datetime,
        overlap_end: datetime,
        before: timedelta,
        after_: timedelta,
    ) -> datetime | None:
        """Interval-like fire after a first-pass instant: later in the first pass, else the
        earliest in the second pass; ``None`` means "after the overlap"."""
        wall = self._fields.next_wall(cursor)
        if wall is not None and wall < overlap_end:
            return _as_utc(wall, before)
        wall = self._fields.next_wall(overlap_start - _ONE_SECOND)
        if wall is not None and wall < overlap_end:
            return _as_utc(wall, after_)
        return None


class _CronFields:
    """cronsim's parsed fields and our search for the next matching naive wall time."""

    __slots__ = ("_first", "_hours", "_minutes", "_months", "_seconds", "_sim")

    def __init__(self, text: str, parts: list[str], spec: str) -> None:
        try:
            sim = CronSim(spec, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ScheduleError(explain_cron_error(text, parts, exc), field=FIELD) from None
        self._sim = sim
        self._seconds = tuple(sorted(sim.seconds))
        self._minutes = tuple(sorted(sim.minutes))
        self._hours = tuple(sorted(sim.hours))
        self._months = frozenset(sim.months)
        self._first = time(self._hours[0], self._minutes[0], self._seconds[0])
        if self.next_wall(datetime(1999, 12, 31, 23, 59, 59)) is None:
            raise ScheduleError(f"invalid {FIELD} {text!r}: it never fires", field=FIELD)

    def explain(self) -> str:
        text: str = self._sim.explain()
        return text

    def next_wall(self, after: datetime) -> datetime | None:
        """First naive wall time matching the fields strictly after naive ``after``.

        Looks at most 400 years ahead (a whole Gregorian cycle) and not past year 9999.
        """
        start = after.replace(microsecond=0) + _ONE_SECOND
        day = start.date()
        found = self._time_from(start.hour, start.minute, start.second)
        limit = day.year + _SEARCH_YEARS
        months, match_day = self._months, self._sim.match_day
        while day.year <= limit:
            if day.month not in months:
                if day.month == 12 and day.year == MAXYEAR:
                    return None
                day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
                found = self._first
                continue
            if found is not None and match_day(day):
                return datetime.combine(day, found)
            if day == date.max:
                return None
            day += timedelta(days=1)
            found = self._first
        return None

    def _time_from(self, hour: int, minute: int, second: int) -> time | None:
        """The earliest matching time of day at or after ``hour:minute:second``."""
        hours, minutes, seconds = self._hours, self._minutes, self._seconds
        i = bisect_left(hours, hour)
        if i < len(hours) and hours[i] == hour:
            j = bisect_left(minutes, minute)
            if j < len(minutes) and minutes[j] == minute:
                k = bisect_left(seconds, second)
                if k < len(seconds):
                    return time(hour, minute, seconds[k])
                j += 1
            if j < len(minutes):
                return time(hour, minutes[j], seconds[0])
            i += 1
        if i < len(hours):
            return time(hours[i], minutes[0], seconds[0])
        return None


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"next_after needs a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _as_utc(wall: datetime, offset: timedelta) -> datetime:
    return (wall - offset).replace(tzinfo=UTC)
