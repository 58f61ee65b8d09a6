"""IANA timezones for schedules: which names a job may use, and the DST arithmetic the
cron search needs (offsets of a wall time, the instant of a transition)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, available_timezones

from chronoq.errors import ScheduleError

_ZONE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*")
UTC_NAMES = frozenset({"UTC", "Etc/UTC"})  # evaluated on the fast path, no DST
_NOT_ZONES = frozenset({"localtime", "posixrules"})  # host-dependent files, not IANA zones
_ONE_SECOND: Final = timedelta(seconds=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    """Every timezone a job may name: the IANA keys this installation has (the ``tzdata``
    package, a dependency, and the system's), without host-dependent files. The OpenAPI
    document lists exactly these, so the schema and the validation agree."""
    return frozenset(
        name
        for name in available_timezones()
        if _ZONE_KEY.fullmatch(name) is not None and name not in _NOT_ZONES
    )


def validate_timezone(name: str) -> str:
    """Return ``name`` if it is a loadable IANA timezone key, else raise ``ScheduleError``."""
    load_zone(name)
    return name


def wall_offsets(wall: datetime, zone: tzinfo) -> tuple[timedelta, timedelta]:
    """UTC offsets of naive ``wall`` read with fold=0 and fold=1 (PEP 495).

    Equal: an ordinary time. fold0 > fold1: ambiguous (fall-back overlap), fold0
    is the first occurrence. fold0 < fold1: nonexistent (spring-forward gap).
    """
    first = zone.utcoffset(wall)
    second = zone.utcoffset(wall.replace(fold=1))
    if first is None or second is None:  # pragma: no cover - ZoneInfo always answers
        raise ValueError(f"timezone {zone!r} has no UTC offset")
    return first, second


def transition_instant(low: datetime, high: datetime, zone: tzinfo) -> datetime:
    """The instant in ``(low, high]`` (naive UTC) where the offset becomes that of ``high``.

    Transitions are whole seconds; the range spans one transition (at most a DST shift).
    """
    lo = (low.replace(tzinfo=UTC) - _EPOCH) // _ONE_SECOND
    hi = -((_EPOCH - high.replace(tzinfo=UTC)) // _ONE_SECOND)  # ceiling
    target = datetime.fromtimestamp(hi, zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return _EPOCH + timedelta(seconds=hi)


def load_zone(name: str) -> tzinfo:
    message = f"unknown timezone {name!r}: expected an IANA name such as 'Europe/Berlin'"
    if not isinstance(name, str) or name not in known_timezones():
        raise ScheduleError(message, field="timezone")
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        raise ScheduleError(message, field="timezone") from None
