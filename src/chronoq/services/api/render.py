"""Domain objects -> JSON-ready dicts (the response shapes of docs/api.md)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from chronoq.domain.clock import format_rfc3339
from chronoq.domain.jobs import Fire, Job, Run
from chronoq.domain.policies import Policies


def _t(value: datetime | None) -> str | None:
    return None if value is None else format_rfc3339(value)


def job_v1(job: Job, payload: str | None) -> dict[str, Any]:
    """``payload`` None: an offloaded payload a list leaves out (``payload_offloaded``)."""
    return {
        "job_id": job.job_id,
        "project_id": job.project_id,
        "payload": payload,
        "payload_offloaded": job.payload_ref is not None,
        "payload_size": job.payload_size,
        "status": job.status.value,
        "cron_schedule": job.cron_schedule,
        "timezone": job.timezone,
        "next_fire_at": _t(job.next_fire_at),
        "max_retries": job.max_retries,
        "timeout_seconds": job.timeout_seconds,
        "created_at": _t(job.created_at),
        "updated_at": _t(job.updated_at),
        **policies_v1(job.policies),
        "fire_count": job.fire_count,
        "paused_fire_at": _t(job.paused_fire_at),
        "idempotency_key": job.idempotency_key,
        "queue": job.queue,
        "priority": job.priority,
    }


@lru_cache(maxsize=1024)
def policies_v1(p: Policies) -> dict[str, Any]:
    """A job's schedule policies, flat, as they are submitted (defaults filled in).
    Cached (a list or a batch shares a few policies): callers copy it, never change it."""
    return {
        "overlap": p.overlap.value,
        "misfire": p.misfire.value,
        "catch_up_window_seconds": p.catch_up_window_seconds,
        "start_deadline_seconds": p.start_deadline_seconds,
        "jitter_seconds": p.jitter_seconds,
        "start_at": _t(p.start_at),
        "end_at": _t(p.end_at),
        "max_fires": p.max_fires,
        "dst_gap": p.dst_gap.value,
        "dst_repeat": p.dst_repeat.value,
    }


def fire_v1(fire: Fire) -> dict[str, Any]:
    return {
        "scheduled_for": _t(fire.scheduled_for),
        "last_scheduled_for": _t(fire.last_scheduled_for),
        "count": fire.count,
        "outcome": fire.outcome,
        "reason": None if fire.reason is None else fire.reason.value,
        "run_id": fire.run_id,
        "attempts": fire.attempts,
        "manual": fire.manual,
        "recorded_at": _t(fire.recorded_at),
    }


def job_seed(job: Job, payload: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": job.job_id,
        "project_id": job.project_id,
        "payload": payload,
        "status": job.status.value,
        "next_fire_at": _t(job.next_fire_at),
        "created_at": _t(job.created_at),
    }
    if job.cron_schedule is not None:
        body["cron_schedule"] = job.cron_schedule
    return body


def job_seed_summary(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "status": job.status.value,
        "next_fire_at": _t(job.next_fire_at),
        "created_at": _t(job.created_at),
    }


def run_v1(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job_id": run.job_id,
        "attempt": run.attempt,
        "status": run.status.value,
        "scheduled_for": _t(run.scheduled_for),
        "triggered_at": _t(run.triggered_at),
        "started_at": _t(run.started_at),
        "completed_at": _t(run.completed_at),
        "output": run.output,
        "output_truncated": run.output_truncated,
        "exit_code": run.exit_code,
        "worker_id": run.worker_id,
        "error_message": run.error_message,
        "interruptions": run.interruptions,
        "manual": run.manual,
        "queue": run.queue,
        "priority": run.priority,
    }
