"""``GET /v1/jobs``: its query parameters (each bad one a 400 naming it) and its items.

Every filter is applied by the store while it walks the caller's jobs in list order
(``ports.jobs.ListJobsParams``); each listed job carries its newest runs' outcomes, read
for the whole page in one store statement, so a list view needs no request per row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.datastructures import QueryParams

from chronoq.domain.clock import format_rfc3339
from chronoq.domain.jobs import Job
from chronoq.domain.queues import check_queue
from chronoq.domain.states import JobStatus
from chronoq.errors import ValidationError
from chronoq.ports.jobs import JobKind, JobPage, ListJobsParams, RunBrief
from chronoq.services.api.render import job_v1
from chronoq.services.api.schemas import MAX_ID_LEN

RECENT_RUNS = 10
"""Outcomes of the newest runs each listed job carries (``recent_run_statuses``)."""
MAX_SEARCH_LEN = MAX_ID_LEN
_MAX_STATUS_PARAMS = len(JobStatus)
_STATUSES = ", ".join(s.value for s in JobStatus)


def list_params(
    user: str, query: QueryParams, raw_query: bytes, cursor: str | None
) -> ListJobsParams:
    """``cursor``: the store position, already opened by the caller; ``raw_query``: the
    query string as sent (checked for invalid UTF-8, which Starlette would replace)."""
    _check_utf8(raw_query)
    return ListJobsParams(
        user_id=user,
        statuses=_statuses(query.getlist("status")),
        project_id=_text(query.get("project_id"), "project_id", MAX_ID_LEN),
        kind=_kind(query.get("kind")),
        queue=_queue(query.get("queue")),
        search=_text(query.get("q"), "q", MAX_SEARCH_LEN),
        cursor=cursor,
        limit=limit_param(query.get("limit")),
        recent_runs=RECENT_RUNS,
    )


def page_items(page: JobPage) -> list[dict[str, Any]]:
    # Offloaded payloads (each up to max_body_bytes) stay in the blob store: a page of
    # 1,000 jobs must not fetch 1,000 objects. GET /v1/jobs/{id} returns them.
    return [listed_job(job, page.recent_runs.get(job.job_id, [])) for job in page.items]


def listed_job(job: Job, recent: list[RunBrief]) -> dict[str, Any]:
    item = job_v1(job, job.payload)
    item["last_run"] = _brief(recent[0]) if recent else None
    item["recent_run_statuses"] = [run.status.value for run in recent]
    return item


def _brief(run: RunBrief) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "status": run.status.value,
        "attempt": run.attempt,
        "scheduled_for": _time(run.scheduled_for),
        "started_at": _time(run.started_at),
        "completed_at": _time(run.completed_at),
    }


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_rfc3339(value)


def _statuses(raw: list[str]) -> frozenset[JobStatus]:
    """Repeated (``status=A&status=B``) and/or comma-separated (``status=A,B``) values."""
    if len(raw) > _MAX_STATUS_PARAMS or sum(len(r) for r in raw) > 20 * _MAX_STATUS_PARAMS:
        raise ValidationError(
            f"status takes at most {_MAX_STATUS_PARAMS} values, from {_STATUSES}", field="status"
        )
    found: set[JobStatus] = set()
    for part in (p.strip() for r in raw for p in r.split(",")):
        if not part:
            continue
        try:
            found.add(JobStatus(part.upper()))
        except ValueError:
            raise ValidationError(
                f"status must be one or more of {_STATUSES}, got {part[:40]!r}", field="status"
            ) from None
    return frozenset(found)


_TEXT_PARAMS = frozenset({"status", "project_id", "kind", "queue", "q"})


def _check_utf8(raw_query: bytes) -> None:
    """A 400 naming the parameter whose value is not UTF-8 once percent-decoded (decoded
    with replacement, it would filter for a text the caller never sent)."""
    for pair in raw_query.split(b"&"):
        name, _, value = pair.partition(b"=")
        key = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace")
        if key not in _TEXT_PARAMS:
            continue
        try:
            unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(f"{key} must be valid UTF-8", field=key) from None


def _queue(raw: str | None) -> str | None:
    """A queue name as jobs are given one (a name no job can have is a 400, not an
    empty page: the caller mistyped it)."""
    return check_queue(raw) if raw else None


def _kind(raw: str | None) -> JobKind | None:
    if not raw:
        return None
    try:
        return JobKind(raw)
    except ValueError:
        raise ValidationError("kind must be once or recurring", field="kind") from None


def _text(raw: str | None, name: str, max_len: int) -> str | None:
    if raw is not None and "\x00" in raw:
        raise ValidationError(f"{name} must not contain a NUL character", field=name)
    if raw is not None and len(raw) > max_len:
        raise ValidationError(f"{name} must be at most {max_len} characters", field=name)
    return raw or None


def limit_param(raw: str | None) -> int:
    if raw is None:
        return 100
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 4 or not 1 <= int(raw) <= 1000:
        raise ValidationError("limit must be an integer from 1 to 1000", field="limit")
    return int(raw)
