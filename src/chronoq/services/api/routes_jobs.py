"""``/v1`` job routes: create, batch create, list, get, cancel, runs, a run's output."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from chronoq.domain.jobs import Job
from chronoq.domain.states import JobStatus
from chronoq.errors import NotFoundError, UnavailableError, ValidationError
from chronoq.services.api.cursors import CursorSeal
from chronoq.services.api.deps import ApiDeps
from chronoq.services.api.http import (
    JSONResponse,
    job_id_of,
    read_body,
    shell_allowed,
    user_of,
)
from chronoq.services.api.listing import limit_param, list_params, page_items
from chronoq.services.api.outputs import chunks, offloaded_output
from chronoq.services.api.render import job_v1, run_v1
from chronoq.services.api.schemas import (
    BATCH_DECODER,
    JOB_DECODER,
    MAX_BATCH,
    decode,
    to_spec,
)
from chronoq.services.api.submit import HEADER, check_batch_keys, header_key, submit_specs

NOT_FOUND = "job not found"


def deps_of(request: Request) -> ApiDeps:
    deps: ApiDeps = request.app.state.deps
    return deps


async def owned_job(deps: ApiDeps, user: str, raw_id: str | None) -> Job:
    """The caller's job, or 404 — the same answer for others' jobs and missing ones.

    With a submission log, the log is asked first: an entry leaves it only once its job
    is in the store, so log-then-store never misses a job a writer is moving (the other
    order could), and a job still in the log (ACCEPTED) reads while the store is down.
    With the log down, a stored job still reads; a missing one is 503, not a false 404."""
    job_id = job_id_of(raw_id)
    log_down: UnavailableError | None = None
    if deps.submissions is not None:
        try:
            logged = await deps.submissions.get_job(user, job_id)
        except UnavailableError as exc:
            log_down = exc
        else:
            if logged is not None:  # accepted, not moved in yet
                return replace(logged, status=JobStatus.ACCEPTED)
    job = await deps.store.get_job(user, job_id)
    if job is None and log_down is not None:
        raise log_down  # it may be waiting in the log
    if job is None:
        raise NotFoundError(NOT_FOUND)
    return job


async def create_job(request: Request) -> JSONResponse:
    """201 with the new job; 200 with the original one for a replayed Idempotency-Key."""
    deps = deps_of(request)
    user = user_of(request)
    key = header_key(request)
    item = decode(JOB_DECODER, await read_body(request, deps.max_body_bytes))
    spec = to_spec(
        item,
        user_id=user,
        shell_enabled=shell_allowed(request, deps.shell_enabled),
        now=deps.clock.now(),
        idempotency_key=key,
    )
    (done,) = await submit_specs(
        deps, [spec], key_field=HEADER if key is not None else "idempotency_key"
    )
    return JSONResponse(job_v1(done.job, done.payload), status_code=200 if done.replayed else 201)


async def create_batch(request: Request) -> JSONResponse:
    """All or nothing; items with an ``idempotency_key`` replay like single submissions
    (200 when every item was a replay, else 201)."""
    deps = deps_of(request)
    user = user_of(request)
    if request.headers.get(HEADER) is not None:
        raise ValidationError(
            f"a batch takes keys per item (jobs[N].idempotency_key), not the {HEADER} header",
            field=HEADER,
        )
    batch = decode(BATCH_DECODER, await read_body(request, deps.max_body_bytes))
    if not 1 <= len(batch.jobs) <= MAX_BATCH:
        raise ValidationError(
            f"a batch holds 1 to {MAX_BATCH} jobs, got {len(batch.jobs)}", field="jobs"
        )
    shell = shell_allowed(request, deps.shell_enabled)
    now = deps.clock.now()
    prefixes = [f"jobs[{i}]." for i in range(len(batch.jobs))]
    specs = [
        to_spec(item, user_id=user, shell_enabled=shell, prefix=prefix, now=now)
        for item, prefix in zip(batch.jobs, prefixes, strict=True)
    ]
    check_batch_keys(specs)
    done = await submit_specs(deps, specs, prefixes)
    items = [job_v1(d.job, d.payload) for d in done]
    status = 200 if all(d.replayed for d in done) else 201
    return JSONResponse({"items": items}, status_code=status)


async def list_jobs(request: Request) -> JSONResponse:
    deps = deps_of(request)
    user = user_of(request)
    query = request.query_params
    cursors: CursorSeal = request.app.state.cursors
    raw = request.scope.get("query_string", b"")
    params = list_params(user, query, raw, cursors.open(user, query.get("cursor")))
    page = await deps.store.list_jobs(params)
    return JSONResponse(
        {"items": page_items(page), "next_cursor": cursors.seal(user, page.next_cursor)}
    )


async def get_job(request: Request) -> JSONResponse:
    deps = deps_of(request)
    job = await owned_job(deps, user_of(request), request.path_params["job_id"])
    return JSONResponse(job_v1(job, await deps.ingest.load_payload(job)))


async def list_runs(request: Request) -> JSONResponse:
    deps = deps_of(request)
    user = user_of(request)
    job = await owned_job(deps, user, request.path_params["job_id"])
    runs = await deps.store.list_runs(
        user, job.job_id, limit_param(request.query_params.get("limit"))
    )
    return JSONResponse({"items": [run_v1(run) for run in runs]})


OUTPUT_CHUNK_CHARS = 65_536
"""Characters read from the store per slice of a streamed output (bounded memory)."""


async def run_output(request: Request) -> Response:
    """The whole output of one run, streamed as text in slices read from the store, or from
    the blob store when it was offloaded (``services.api.outputs``)."""
    deps = deps_of(request)
    user = user_of(request)
    job = await owned_job(deps, user, request.path_params["job_id"])
    run_id = job_id_of(request.path_params["run_id"], field="run_id")
    offloaded = await offloaded_output(deps, user, job.job_id, run_id)
    if offloaded is not None:
        return StreamingResponse(chunks(offloaded), media_type="text/plain; charset=utf-8")
    first = await deps.store.read_output(user, job.job_id, run_id, 0, OUTPUT_CHUNK_CHARS)
    if first is None:
        raise NotFoundError("no such run")

    async def slices() -> AsyncIterator[bytes]:
        chunk, start = first, 0
        while chunk:
            yield chunk.encode()
            if len(chunk) < OUTPUT_CHUNK_CHARS:
                return
            start += len(chunk)
            chunk = (
                await deps.store.read_output(user, job.job_id, run_id, start, OUTPUT_CHUNK_CHARS)
                or ""
            )

    return StreamingResponse(slices(), media_type="text/plain; charset=utf-8")
