"""Validation of a job's schedule policies (``domain.policies.Policies``) at the edge.

The same rules serve a submission (``schemas.to_spec``) and a change
(``schemas_control.to_changes``): each field is checked alone (type, range), then
against the job it belongs to (a field that only a recurring job has is refused on a
one-shot one, with the reason), then the set as a whole (``end_at`` after
``start_at``; ``catch_up_window_seconds`` only with ``misfire`` ``run_all``).
Every refusal is a ``ValidationError`` naming its field.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from chronoq.domain.clock import parse_rfc3339
from chronoq.domain.policies import DEFAULT_POLICIES, Misfire, Overlap, Policies
from chronoq.domain.schedules import DstGap, DstRepeat
from chronoq.errors import ValidationError

MAX_WINDOW: Final = 366 * 24 * 3600.0
"""Largest ``catch_up_window_seconds`` and ``start_deadline_seconds``: a year (and a day)."""
MAX_JITTER: Final = 24 * 3600.0
"""Largest ``jitter_seconds``: a day."""
MAX_FIRES: Final = 1_000_000_000
MAX_KEY_LEN: Final = 255
"""Characters of an idempotency key."""

DST_FIELDS: Final = ("dst_gap", "dst_repeat")
RECURRING_ONLY: Final = {
    "overlap": "a one-shot job has one fire, so no run of it can overlap another",
    "catch_up_window_seconds": "a one-shot job has one fire, nothing to catch up",
    "end_at": "a one-shot job fires once, at next_fire_at",
    "max_fires": "a one-shot job fires once",
    "dst_gap": "a one-shot job fires at an instant, not at a wall time",
    "dst_repeat": "a one-shot job fires at an instant, not at a wall time",
}
"""Fields that mean nothing without a ``cron_schedule``, and why."""


def parse_policies(given: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Each given policy field (name -> value as sent, None allowed where the field is
    nullable) checked alone and converted to its ``Policies`` type."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        out[name] = None if value is None else _PARSERS[name](value, prefix + name)
    return out


def merge_policies(base: Policies, changes: dict[str, Any]) -> Policies:
    """``base`` with the parsed ``changes`` (None resets a field to its default)."""
    defaults = DEFAULT_POLICIES
    values = {
        name: getattr(defaults, name) if value is None else value for name, value in changes.items()
    }
    return replace(base, **values)


def check_policies(
    policies: Policies,
    *,
    recurring: bool,
    given: frozenset[str],
    prefix: str,
    next_fire_at: datetime | None = None,
    timezone: str | None = None,
) -> None:
    """The set as a whole, for a job that is (or is not) ``recurring``. ``given``: the
    fields the caller set to a value (a null resets; it is never refused)."""
    if not recurring:
        for name, why in RECURRING_ONLY.items():
            if name in given:
                raise ValidationError(
                    f"{name} applies to recurring jobs (a cron_schedule): {why}",
                    field=prefix + name,
                )
    for name in DST_FIELDS:
        if recurring and name in given and timezone is None:
            raise ValidationError(
                f"{name} applies to a schedule in a timezone (in UTC no wall time is skipped"
                " or repeated): give timezone",
                field=prefix + name,
            )
    if policies.catch_up_window_seconds is not None and policies.misfire is not Misfire.RUN_ALL:
        blamed = "misfire" if "misfire" in given else "catch_up_window_seconds"
        raise ValidationError(
            "catch_up_window_seconds applies only to misfire run_all (how far back missed"
            f" fires still run); misfire is {policies.misfire.value}",
            field=prefix + blamed,
        )
    if policies.start_at is not None and next_fire_at is not None and "start_at" in given:
        raise ValidationError(
            "start_at and next_fire_at both set the first fire: give one of them",
            field=prefix + "start_at",
        )
    start, end = policies.start_at, policies.end_at
    if start is not None and end is not None and end <= start:
        blamed = "end_at" if "end_at" in given else "start_at"
        raise ValidationError("end_at must be after start_at", field=prefix + blamed)


def _overlap(value: Any, field: str) -> Overlap:
    try:
        return Overlap(value)
    except ValueError:
        allowed = ", ".join(o.value for o in Overlap)
        raise ValidationError(
            f"overlap must be one of {allowed}, got {str(value)[:80]!r}", field=field
        ) from None


def _misfire(value: Any, field: str) -> Misfire:
    try:
        return Misfire(value)
    except ValueError:
        allowed = ", ".join(m.value for m in Misfire)
        raise ValidationError(
            f"misfire must be one of {allowed}, got {str(value)[:80]!r}", field=field
        ) from None


def _choice(kind: Any) -> Any:
    def check(value: Any, field: str) -> Any:
        name = field.rsplit(".", 1)[-1]
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(k.value for k in kind)
            raise ValidationError(
                f"{name} must be one of {allowed}, got {str(value)[:80]!r}", field=field
            ) from None

    return check


def _seconds(maximum: float) -> Any:
    def check(value: float, field: str) -> float:
        name = field.rsplit(".", 1)[-1]
        if not (math.isfinite(value) and 0 <= value <= maximum):
            raise ValidationError(
                f"{name} must be a number of seconds from 0 to {maximum:.0f}, got {value}",
                field=field,
            )
        return float(value)

    return check


def _instant(value: str, field: str) -> datetime:
    name = field.rsplit(".", 1)[-1]
    if "\x00" in value:
        raise ValidationError(f"{name} must not contain a NUL character", field=field)
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise ValidationError(
            f"{name} {value[:80]!r} is not an RFC 3339 timestamp with 'Z' or an offset,"
            " e.g. 2026-12-31T23:59:59Z",
            field=field,
        ) from None


def _fires(value: float, field: str) -> int:
    if not (math.isfinite(value) and value.is_integer()):
        raise ValidationError(f"max_fires must be an integer, got {value}", field=field)
    if not 1 <= value <= MAX_FIRES:
        raise ValidationError(
            f"max_fires must be from 1 to {MAX_FIRES}, got {value:g}", field=field
        )
    return int(value)


_PARSERS: dict[str, Any] = {
    "overlap": _overlap,
    "misfire": _misfire,
    "catch_up_window_seconds": _seconds(MAX_WINDOW),
    "start_deadline_seconds": _seconds(MAX_WINDOW),
    "jitter_seconds": _seconds(MAX_JITTER),
    "start_at": _instant,
    "end_at": _instant,
    "max_fires": _fires,
    "dst_gap": _choice(DstGap),
    "dst_repeat": _choice(DstRepeat),
}


def idempotency_key(value: str | None, field: str) -> str | None:
    """A key: 1 to ``MAX_KEY_LEN`` characters, not blank, any Unicode but NUL (kept
    exactly as sent)."""
    if value is None:
        return None
    if "\x00" in value:
        raise ValidationError("idempotency_key must not contain a NUL character", field=field)
    if not value.strip():
        raise ValidationError("idempotency_key must not be blank", field=field)
    if len(value) > MAX_KEY_LEN:
        raise ValidationError(
            f"idempotency_key is longer than {MAX_KEY_LEN} characters", field=field
        )
    return value
