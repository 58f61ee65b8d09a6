"""Job control: ``:pause``, ``:resume``, ``:trigger``, ``PATCH``, ``DELETE ?purge=true`` and
the fire ledger ``GET /v1/jobs/{id}/fires`` (the store contract: ``ports.jobs``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from starlette.requests import Request

from chronoq.domain.clock import parse_rfc3339
from chronoq.domain.jobs import Job
from chronoq.errors import (
    ConflictError,
    LimitExceededError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from chronoq.observability.metrics import LIMIT_FIRES_PER_MINUTE
from chronoq.ports.jobs import ListFiresParams
from chronoq.ports.notify import CANCEL, FIRES, RUNS
from chronoq.services.api.deps import ApiDeps
from chronoq.services.api.http import JSONResponse, job_id_of, read_body, shell_allowed, user_of
from chronoq.services.api.render import fire_v1, job_v1, run_v1
from chronoq.services.api.routes_jobs import NOT_FOUND, deps_of, owned_job
from chronoq.services.api.schemas import decode
from chronoq.services.api.schemas_control import PATCH_DECODER, to_changes

DEFAULT_FIRES_WINDOW = timedelta(hours=24)
MAX_FIRES_LIMIT = 1000
DEFAULT_FIRES_LIMIT = 100


async def pause_job(request: Request) -> JSONResponse:
    """PAUSED: no fires until resumed (a run already due or running goes on)."""
    deps, user, job_id = await _target(request)
    job = await deps.store.pause_job(user, job_id, deps.clock.now())
    return await _job_answer(deps, user, job_id, job)


async def resume_job(request: Request) -> JSONResponse:
    """PENDING again; the fires missed while paused are skipped (``paused``), or with
    ``catch_up=true`` left to the job's misfire policy."""
    deps, user, job_id = await _target(request)
    catch_up = _flag(request.query_params.get("catch_up"), "catch_up")
    job = await deps.store.resume_job(user, job_id, deps.clock.now(), catch_up=catch_up)
    deps.notifier.publish(FIRES)  # a held fire may be due now
    return await _job_answer(deps, user, job_id, job)


async def trigger_job(request: Request) -> JSONResponse:
    """A manual fire now: 201 with its run (QUEUED, ``manual``). 409: the job is finished
    or a one-shot job (its one fire is its schedule). 429 with ``Retry-After``: the user
    has had their fires for the minute (``--user-max-fires-per-minute``)."""
    deps, user, job_id = await _target(request)
    try:
        run = await deps.store.trigger_job(
            user, job_id, deps.clock.now(),
            max_fires_per_minute=deps.user_limits.max_fires_per_minute,
        )  # fmt: skip
    except LimitExceededError:
        deps.metrics.user_limit_refusals.labels(LIMIT_FIRES_PER_MINUTE).inc()
        raise
    if run is None:
        await _missing(deps, user, job_id)
    assert run is not None
    deps.notifier.publish(RUNS)
    return JSONResponse(run_v1(run), status_code=201)


async def update_job(request: Request) -> JSONResponse:
    """Change a job from its next fire on; a running run keeps what it started with."""
    deps, user, job_id = await _target(request)
    patch = decode(PATCH_DECODER, await read_body(request, deps.max_body_bytes))
    current = await owned_job(deps, user, job_id)
    changes = to_changes(patch, current, shell_enabled=shell_allowed(request, deps.shell_enabled))
    new_ref: str | None = None
    if "payload" in changes.fields and changes.payload is not None:
        new_ref = await deps.ingest.offload_changed(job_id, changes.payload)
        if new_ref is not None:
            changes = replace(changes, payload=None, payload_ref=new_ref)
    # No blob is deleted here when the row may point at it. A failed update may have
    # committed with only its answer lost, so its new object is left to the leader's
    # orphan sweep (services.orphans), like the old object after a change: a worker that
    # claimed a run just before the change still reads the payload it was given.
    result = await deps.store.update_job(user, job_id, changes, deps.clock.now())
    if result is None:  # no such job of this user: nothing was changed
        await deps.ingest.delete_refs([new_ref])
        await _missing(deps, user, job_id)
    assert result is not None
    job, _old_ref = result
    deps.notifier.publish(FIRES)
    return JSONResponse(job_v1(job, await deps.ingest.load_payload(job)))


async def delete_job(request: Request) -> JSONResponse:
    """Cancel (the job stays, CANCELLED), or with ``purge=true`` delete it with its runs,
    outputs, ledger and blobs. Running runs are stopped either way."""
    deps = deps_of(request)
    user = user_of(request)
    job_id = job_id_of(request.path_params["job_id"])
    if not _flag(request.query_params.get("purge"), "purge"):
        result = await deps.store.cancel_job(user, job_id, deps.clock.now())
        if result is None:
            raise NotFoundError(NOT_FOUND)
        _stop(deps, result.running_run_ids)
        return JSONResponse(job_v1(result.job, await deps.ingest.load_payload(result.job)))
    purged = await deps.store.purge_job(user, job_id)
    if purged is None:
        await _missing(deps, user, job_id)
    assert purged is not None
    _stop(deps, purged.running_run_ids)
    await deps.ingest.delete_refs(purged.blob_refs)
    return JSONResponse({"job_id": job_id, "purged": True})


async def list_fires(request: Request) -> JSONResponse:
    """The job's fire ledger: each nominal fire in ``[from, to]`` with its one outcome."""
    deps, user, job_id = await _target(request)
    query = request.query_params
    now = deps.clock.now()
    given_start = _instant(query.get("from"), "from")
    end = _instant(query.get("to"), "to") or max(now, given_start or now)
    start = given_start or end - DEFAULT_FIRES_WINDOW
    if start > end:
        raise ValidationError("from must not be after to", field="from")
    limit = _limit(query.get("limit"))
    fires = await deps.store.list_fires(
        ListFiresParams(user_id=user, job_id=job_id, start=start, end=end, limit=limit)
    )
    if fires is None:
        await _missing(deps, user, job_id)
    assert fires is not None
    return JSONResponse({"items": [fire_v1(fire) for fire in fires]})


# -- plumbing ---------------------------------------------------------------------------


async def _target(request: Request) -> tuple[ApiDeps, str, str]:
    return deps_of(request), user_of(request), job_id_of(request.path_params["job_id"])


async def _job_answer(deps: ApiDeps, user: str, job_id: str, job: Job | None) -> JSONResponse:
    if job is None:
        await _missing(deps, user, job_id)
    assert job is not None
    return JSONResponse(job_v1(job, await deps.ingest.load_payload(job)))


async def _missing(deps: ApiDeps, user: str, job_id: str) -> None:
    """The store has no such job of this user: 404, or 409 while it still waits in the
    submission log (accepted, not yet stored: retry in a moment)."""
    if deps.submissions is not None:
        try:
            logged = await deps.submissions.get_job(user, job_id)
        except UnavailableError:
            logged = None
        if logged is not None:
            raise ConflictError(
                "the job is accepted but not stored yet (buffered ingestion); retry shortly"
            )
    raise NotFoundError(NOT_FOUND)


def _stop(deps: ApiDeps, running_run_ids: list[str]) -> None:
    """Hint the workers holding these runs to stop them now (they also learn it at their
    next lease renewal), and wake the pickers."""
    for run_id in running_run_ids:
        deps.notifier.publish(CANCEL, run_id)
    deps.notifier.publish(FIRES)


def _flag(raw: str | None, name: str) -> bool:
    if raw is None:
        return False
    value = raw.lower()
    if value == "true":
        return True
    if value == "false":
        return False
    raise ValidationError(f"{name} must be true or false, got {raw[:40]!r}", field=name)


def _instant(raw: str | None, name: str) -> datetime | None:
    if raw is None:
        return None
    try:
        return parse_rfc3339(raw)
    except ValueError:
        raise ValidationError(
            f"{name} {raw[:80]!r} is not an RFC 3339 timestamp with 'Z' or an offset",
            field=name,
        ) from None


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_FIRES_LIMIT
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 4 or not 1 <= int(raw) <= 1000:
        raise ValidationError("limit must be an integer from 1 to 1000", field="limit")
    return int(raw)
