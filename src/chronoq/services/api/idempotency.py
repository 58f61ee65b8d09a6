"""Idempotency keys (issue 9.7): a replayed submission answers with the original job.

A submission with a key carries ``request_hash``, the SHA-256 of a canonical encoding
of the validated spec without the key (field order, number spelling, ``3`` vs ``3.0``
and timestamp offsets do not matter: the validated values are encoded). Its job id is
derived from ``(user, key, request_hash)`` (``keyed_job_id``), so concurrent duplicates
collapse onto one job id on every ingest path: the store refuses the second insert of
that id, a submission log's writer skips it (``insert_jobs(if_absent=True)``). The
store's unique ``(user_id, idempotency_key)`` index refuses the same key with another
body.

``resolve`` answers, per keyed spec, before and after a write: the job already stored
(or still in the submission log) under the key, a ``KeyConflict`` (409) when that job
was submitted with another body, or nothing (a new job).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import msgspec

from chronoq.domain.clock import format_rfc3339
from chronoq.domain.jobs import Job, JobSpec
from chronoq.domain.queues import DEFAULT_QUEUE
from chronoq.domain.states import JobStatus
from chronoq.errors import ConflictError, UnavailableError
from chronoq.ports.jobs import JobStore
from chronoq.ports.submissions import SubmissionLog

_NAMESPACE = uuid.UUID("6f1d2c1e-6a53-4b8e-9d5c-2f0c1d9b7a11")
"""uuid5 namespace of keyed job ids (fixed forever: ids must stay the same across
versions for a replay to find its job)."""


class KeyConflict(ConflictError):
    """The key was used by this user for another submission (409 ``idempotency_key_reused``)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def request_hash(spec: JobSpec) -> str:
    """SHA-256 (hex) of the validated submission without its key and user."""
    p = spec.policies
    canonical: dict[str, Any] = {
        "project_id": spec.project_id,
        "payload": spec.payload,
        "cron_schedule": spec.cron_schedule,
        "timezone": spec.timezone,
        "next_fire_at": _t(spec.next_fire_at),
        "max_retries": spec.max_retries,
        "timeout_seconds": spec.timeout_seconds,
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
    if spec.queue != DEFAULT_QUEUE or spec.priority != 0:
        # Only when set: keys kept from before queues existed keep their fingerprints.
        canonical.update(queue=spec.queue, priority=spec.priority)
    encoded = msgspec.json.encode(dict(sorted(canonical.items())))
    return hashlib.sha256(encoded).hexdigest()


def _t(value: Any) -> str | None:
    return None if value is None else format_rfc3339(value)


def with_key(spec: JobSpec, key: str | None) -> JobSpec:
    """``spec`` under ``key`` with its ``request_hash`` (unchanged without a key)."""
    if key is None:
        return spec
    return replace(spec, idempotency_key=key, request_hash=request_hash(spec))


def keyed_job_id(spec: JobSpec) -> str:
    """The job id of a keyed submission: the same for every replay of it."""
    assert spec.idempotency_key is not None and spec.request_hash is not None
    name = msgspec.json.encode([spec.user_id, spec.idempotency_key, spec.request_hash])
    return str(uuid.uuid5(_NAMESPACE, name.decode()))


async def resolve(
    store: JobStore,
    submissions: SubmissionLog | None,
    specs: Sequence[JobSpec],
    *,
    field: str = "idempotency_key",
    prefixes: Sequence[str] | None = None,
) -> list[Job | None]:
    """Per spec: the job its key already names (a replay), or None (new or unkeyed).
    ``KeyConflict`` if a key names a job submitted with another body."""
    found: list[Job | None] = []
    for index, spec in enumerate(specs):
        key = spec.idempotency_key
        if key is None:
            found.append(None)
            continue
        prefix = prefixes[index] if prefixes is not None else ""
        job = await _logged(submissions, spec)
        if job is None:
            job = await store.job_by_idempotency_key(spec.user_id, key)
        if job is not None and job.request_hash != spec.request_hash:
            raise KeyConflict(
                "this Idempotency-Key was used for another submission (a different body);"
                " use a new key for a new job",
                field=prefix + field,
            )
        found.append(job)
    return found


async def _logged(submissions: SubmissionLog | None, spec: JobSpec) -> Job | None:
    """The replayed job while it still waits in the submission log (same id, same body)."""
    if submissions is None:
        return None
    try:
        job = await submissions.get_job(spec.user_id, keyed_job_id(spec))
    except UnavailableError:
        return None  # the store is asked next; the log's own write fails loudly if down
    return None if job is None else replace(job, status=JobStatus.ACCEPTED)
