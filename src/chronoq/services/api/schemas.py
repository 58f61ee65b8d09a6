"""Request bodies (msgspec, unknown fields rejected) and their validation into ``JobSpec``."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import TypeVar

import msgspec

from chronoq.domain.clock import parse_rfc3339
from chronoq.domain.jobs import JobSpec
from chronoq.domain.policies import DEFAULT_POLICIES, POLICY_NAMES, first_fire_at
from chronoq.domain.queues import DEFAULT_QUEUE, check_priority, check_queue
from chronoq.domain.schedules import parse_schedule
from chronoq.domain.zones import validate_timezone
from chronoq.errors import ForbiddenError, ScheduleError, ValidationError
from chronoq.services.api.idempotency import with_key
from chronoq.services.api.schemas_policies import (
    check_policies,
    idempotency_key,
    merge_policies,
    parse_policies,
)

T = TypeVar("T")
MAX_BATCH = 1000
MAX_RETRIES = 100
MAX_TIMEOUT = 7 * 24 * 3600.0
MIN_TIMEOUT = 0.001
"""One millisecond: below it no process could even start (``1e-300`` is refused)."""
MAX_ID_LEN = 200
SHELL_PREFIX = "cmd:"


class JobIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A job submission (``POST /submit``, ``POST /v1/jobs``, one item of a batch)."""

    project_id: str
    payload: str
    cron_schedule: str | None = None
    next_fire_at: str | None = None
    max_retries: float | None = None
    """A JSON integer; ``3.0`` is the integer 3, as JSON Schema's ``integer`` says."""
    timeout_seconds: float | None = None
    timezone: str | None = None
    overlap: str | None = None
    misfire: str | None = None
    catch_up_window_seconds: float | None = None
    start_deadline_seconds: float | None = None
    jitter_seconds: float | None = None
    start_at: str | None = None
    end_at: str | None = None
    max_fires: float | None = None
    """A JSON integer, like ``max_retries``."""
    dst_gap: str | None = None
    dst_repeat: str | None = None
    idempotency_key: str | None = None
    """Replays of this submission answer with the original job (``services.api.idempotency``)."""
    queue: str | None = None
    """Which workers take its runs (``domain.queues``); default ``default``."""
    priority: float | None = None
    """A JSON integer, -1000..1000 (higher dispatches first); default 0."""


class BatchIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/jobs:batch``: 1 to 1000 jobs, validated all or nothing."""

    jobs: list[JobIn]


JOB_DECODER = msgspec.json.Decoder(JobIn)
BATCH_DECODER = msgspec.json.Decoder(BatchIn)


def decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """Decode a body, turning msgspec's messages into ``ValidationError``s naming the field.

    Syntax is checked before shape: a truncated or non-UTF-8 body is
    ``invalid JSON`` even when the part that did arrive also has a bad field.
    """
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError as syntax:
            raise ValidationError(f"invalid JSON: {syntax}") from None
        except RecursionError:
            raise ValidationError("the body is nested too deeply") from None
        message = str(exc)
        raise ValidationError(message, field=_field_of(message)) from None


def to_spec(
    item: JobIn,
    *,
    user_id: str,
    shell_enabled: bool,
    prefix: str = "",
    now: datetime | None = None,
    idempotency_key: str | None = None,
) -> JobSpec:
    """Check every field of a submission; raise ``ValidationError`` naming the field.

    No text field may hold a NUL: PostgreSQL cannot store one and a shell would cut
    a ``cmd:`` at it, so every store gives the same 400 instead of a store's error.
    ``now``: also refuse a schedule with no fire left (``end_at`` before its first).
    ``idempotency_key``: the ``Idempotency-Key`` header's (the field's must agree).
    """
    for name in _TEXT_FIELDS:
        _no_nul(name, getattr(item, name), prefix)
    _text("project_id", item.project_id, prefix)
    if item.payload.startswith(SHELL_PREFIX) and not shell_enabled:
        raise ForbiddenError(
            "shell jobs (cmd:) are not allowed: this server has them off, or (off loopback)"
            " this caller is not allowed to run them (docs/auth.md)"
        )
    schedule = _optional_text("cron_schedule", item.cron_schedule, prefix)
    timezone = _timezone(item.timezone, schedule, prefix)
    if schedule is not None:
        try:
            parse_schedule(schedule, timezone)
        except ScheduleError as exc:
            raise ValidationError(exc.message, field=prefix + "cron_schedule") from None
    next_fire_at = _time(item.next_fire_at, prefix)
    given = {name: value for name in POLICY_NAMES if (value := getattr(item, name)) is not None}
    policies = DEFAULT_POLICIES  # most jobs set no policy: no per-item parse (batch hot path)
    if given:
        policies = merge_policies(DEFAULT_POLICIES, parse_policies(given, prefix))
        check_policies(
            policies,
            recurring=schedule is not None,
            given=frozenset(given),
            prefix=prefix,
            next_fire_at=next_fire_at,
            timezone=timezone,
        )
    spec = JobSpec(
        user_id=user_id,
        project_id=item.project_id,
        payload=item.payload,
        cron_schedule=schedule,
        timezone=timezone,
        next_fire_at=next_fire_at,
        max_retries=_retries(item.max_retries, prefix),
        timeout_seconds=_timeout(item.timeout_seconds, prefix),
        policies=policies,
        queue=DEFAULT_QUEUE if item.queue is None else check_queue(item.queue, prefix + "queue"),
        priority=0 if item.priority is None else check_priority(item.priority, prefix + "priority"),
    )
    if now is not None and schedule is not None:
        fires_at = first_fire_at(
            cron_schedule=schedule,
            timezone=timezone,
            next_fire_at=next_fire_at,
            policies=policies,
            now=now,
        )
        if fires_at is None:
            raise ValidationError(
                "the schedule has no fire left before end_at: it would never run",
                field=prefix + ("end_at" if policies.end_at is not None else "cron_schedule"),
            )
    return with_key(spec, _key(item.idempotency_key, idempotency_key, prefix))


def _key(field_key: str | None, header_key: str | None, prefix: str) -> str | None:
    key = idempotency_key(field_key, prefix + "idempotency_key")
    if header_key is not None and key is not None and key != header_key:
        raise ValidationError(
            "the Idempotency-Key header and the idempotency_key field differ: send one",
            field=prefix + "idempotency_key",
        )
    return key if key is not None else header_key


_TEXT_FIELDS = (
    "project_id",
    "payload",
    "cron_schedule",
    "timezone",
    "next_fire_at",
    "overlap",
    "misfire",
    "start_at",
    "end_at",
    "dst_gap",
    "dst_repeat",
)
_PRINTABLE_ASCII = re.compile(r"[ -~]*")


def _no_nul(name: str, value: str | None, prefix: str) -> None:
    if value is not None and "\x00" in value:
        raise ValidationError(f"{name} must not contain a NUL character", field=prefix + name)


def _text(name: str, value: str, prefix: str) -> str:
    if not value.strip():
        raise ValidationError(f"{name} must not be empty", field=prefix + name)
    if len(value) > MAX_ID_LEN:
        raise ValidationError(f"{name} is longer than {MAX_ID_LEN} characters", field=prefix + name)
    return value


def _optional_text(name: str, value: str | None, prefix: str) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise ValidationError(f"{name} must not be empty when given", field=prefix + name)
    if not _PRINTABLE_ASCII.fullmatch(value):
        raise ValidationError(
            f"{name} must be printable ASCII (digits 0-9, no tabs), got {value[:80]!r}",
            field=prefix + name,
        )
    return value.strip()


def _timezone(value: str | None, schedule: str | None, prefix: str) -> str | None:
    if value is None:
        return None
    value = _optional_text("timezone", value, prefix) or value
    if schedule is None:
        raise ValidationError(
            "timezone applies to cron_schedule; give a cron_schedule or drop timezone",
            field=prefix + "timezone",
        )
    try:
        return validate_timezone(value)
    except ScheduleError as exc:
        raise ValidationError(exc.message, field=prefix + "timezone") from None


def _time(value: str | None, prefix: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise ValidationError(
            f"next_fire_at {value!r} is not an RFC 3339 timestamp with 'Z' or an offset,"
            " e.g. 2026-12-31T23:59:59Z",
            field=prefix + "next_fire_at",
        ) from None


def _retries(value: float | None, prefix: str) -> int:
    if value is None:
        return 0
    if not (math.isfinite(value) and value.is_integer()):
        raise ValidationError(
            f"max_retries must be an integer, got {value}", field=prefix + "max_retries"
        )
    if not 0 <= value <= MAX_RETRIES:
        raise ValidationError(
            f"max_retries must be between 0 and {MAX_RETRIES}, got {value:g}",
            field=prefix + "max_retries",
        )
    return int(value)


def _timeout(value: float | None, prefix: str) -> float | None:
    if value is None:
        return None
    if not (math.isfinite(value) and MIN_TIMEOUT <= value <= MAX_TIMEOUT):
        raise ValidationError(
            f"timeout_seconds must be from {MIN_TIMEOUT} to {MAX_TIMEOUT:.0f}, got {value}",
            field=prefix + "timeout_seconds",
        )
    return value


_NAMED_FIELD = re.compile(r"field `([^`]+)`")


def _field_of(message: str) -> str | None:
    """``"Object contains unknown field `x` - at `$.jobs[3]`"`` -> ``"jobs[3].x"``."""
    path = ""
    if " - at `$" in message:
        path = message.split(" - at `$", 1)[1].rstrip("`").lstrip(".")
    named = _NAMED_FIELD.search(message)
    if named is not None:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None
