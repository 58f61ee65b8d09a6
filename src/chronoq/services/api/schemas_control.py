"""``PATCH /v1/jobs/{id}``: the body (a JSON merge patch over a job's submission fields)
and its validation against the job it changes, into ``domain.jobs.JobChanges``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from chronoq.domain.jobs import Job, JobChanges
from chronoq.domain.policies import POLICY_NAMES
from chronoq.domain.queues import DEFAULT_QUEUE, check_priority, check_queue
from chronoq.domain.schedules import parse_schedule
from chronoq.domain.zones import validate_timezone
from chronoq.errors import ForbiddenError, ScheduleError, ValidationError
from chronoq.services.api.schemas import SHELL_PREFIX, _optional_text, _retries, _time, _timeout
from chronoq.services.api.schemas_policies import (
    check_policies,
    merge_policies,
    parse_policies,
)

Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class JobPatchIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The fields to change; absent ones stay. ``null`` resets a nullable field (no
    timeout, no ``end_at``...) or a policy to its default."""

    cron_schedule: str | Unset = UNSET
    timezone: str | Unset | None = UNSET
    next_fire_at: str | Unset = UNSET
    """One-shot jobs only: the new time of their one fire."""
    payload: str | Unset = UNSET
    max_retries: float | Unset = UNSET
    timeout_seconds: float | Unset | None = UNSET
    overlap: str | Unset | None = UNSET
    misfire: str | Unset | None = UNSET
    catch_up_window_seconds: float | Unset | None = UNSET
    start_deadline_seconds: float | Unset | None = UNSET
    jitter_seconds: float | Unset | None = UNSET
    start_at: str | Unset | None = UNSET
    end_at: str | Unset | None = UNSET
    max_fires: float | Unset | None = UNSET
    dst_gap: str | Unset | None = UNSET
    dst_repeat: str | Unset | None = UNSET
    queue: str | Unset | None = UNSET
    """Runs created after the change go to this queue (``null``: ``default``)."""
    priority: float | Unset | None = UNSET
    """Runs created after the change get this priority (``null``: 0)."""


PATCH_DECODER = msgspec.json.Decoder(JobPatchIn)
_TEXT = (
    "cron_schedule",
    "timezone",
    "next_fire_at",
    "payload",
    "overlap",
    "misfire",
    "start_at",
    "end_at",
    "dst_gap",
    "dst_repeat",
)


def to_changes(patch: JobPatchIn, job: Job, *, shell_enabled: bool) -> JobChanges:
    """Check the patch against ``job``; the payload is inline here (the route offloads)."""
    given = {f: getattr(patch, f) for f in patch.__struct_fields__}
    given = {name: value for name, value in given.items() if value is not UNSET}
    if not given:
        raise ValidationError("nothing to change: send at least one field")
    for name in _TEXT:
        value = given.get(name)
        if isinstance(value, str) and "\x00" in value:
            raise ValidationError(f"{name} must not contain a NUL character", field=name)
    values: dict[str, Any] = {}
    fields: set[str] = set()
    _schedule(given, job, values, fields)
    if "payload" in given:
        payload = given["payload"]
        if payload.startswith(SHELL_PREFIX) and not shell_enabled:
            raise ForbiddenError(
                "shell jobs (cmd:) are not allowed: this server has them off, or (off"
                " loopback) this caller is not allowed to run them (docs/auth.md)"
            )
        values.update(payload=payload, payload_size=len(payload.encode()))
        fields.add("payload")
    if "max_retries" in given:
        values["max_retries"] = _retries(given["max_retries"], "")
        fields.add("max_retries")
    if "timeout_seconds" in given:
        values["timeout_seconds"] = _timeout(given["timeout_seconds"], "")
        fields.add("timeout_seconds")
    if "queue" in given:
        queue = given["queue"]
        values["queue"] = DEFAULT_QUEUE if queue is None else check_queue(queue, "queue")
        fields.add("queue")
    if "priority" in given:
        priority = given["priority"]
        values["priority"] = 0 if priority is None else check_priority(priority, "priority")
        fields.add("priority")
    changed: dict[str, Any] = {name: given[name] for name in POLICY_NAMES if name in given}
    policies = merge_policies(job.policies, parse_policies(changed, ""))
    if changed:
        if not job.recurring and "start_at" in changed and changed["start_at"] is not None:
            raise ValidationError(
                "start_at applies to recurring jobs here: a one-shot job's time is"
                " next_fire_at; change that instead",
                field="start_at",
            )
        set_now = frozenset(name for name, value in changed.items() if value is not None)
        timezone = values.get("timezone", job.timezone)
        check_policies(
            policies, recurring=job.recurring, given=set_now, prefix="", timezone=timezone
        )
        values["policies"] = policies
        fields.add("policies")
    return JobChanges(fields=frozenset(fields), **values)


def _schedule(given: dict[str, Any], job: Job, values: dict[str, Any], fields: set[str]) -> None:
    """``cron_schedule`` and ``timezone`` (recurring jobs), ``next_fire_at`` (one-shot)."""
    if not job.recurring:
        for name in ("cron_schedule", "timezone"):
            if given.get(name) is not None:
                raise ValidationError(
                    f"{name} applies to recurring jobs: this job is a one-shot one (it has"
                    " no schedule; change next_fire_at, or submit a recurring job)",
                    field=name,
                )
        if "next_fire_at" in given:
            at: datetime | None = _time(given["next_fire_at"], "")
            values["next_fire_at"] = at
            fields.add("next_fire_at")
        return
    if "next_fire_at" in given:
        raise ValidationError(
            "next_fire_at applies to one-shot jobs: a recurring job's next fire follows its"
            " schedule (change cron_schedule, or start_at)",
            field="next_fire_at",
        )
    if "cron_schedule" not in given and "timezone" not in given:
        return
    schedule = job.cron_schedule
    if "cron_schedule" in given:
        schedule = _optional_text("cron_schedule", given["cron_schedule"], "")
    timezone = job.timezone
    if "timezone" in given:
        raw = given["timezone"]
        try:
            timezone = None if raw is None else validate_timezone(raw.strip())
        except ScheduleError as exc:
            raise ValidationError(exc.message, field="timezone") from None
    assert schedule is not None
    try:
        parse_schedule(schedule, timezone)
    except ScheduleError as exc:
        raise ValidationError(exc.message, field="cron_schedule") from None
    values.update(cron_schedule=schedule, timezone=timezone)
    fields.update({"cron_schedule", "timezone"})
