"""The seed's routes, kept compatible: /submit, /job, /jobs, /health, /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from chronoq.errors import ValidationError
from chronoq.observability.metrics import metrics_text
from chronoq.ports.jobs import ListJobsParams
from chronoq.services.api.http import JSONResponse, read_body, shell_allowed, user_of
from chronoq.services.api.render import job_seed, job_seed_summary
from chronoq.services.api.routes_jobs import deps_of, owned_job
from chronoq.services.api.schemas import JOB_DECODER, decode, to_spec
from chronoq.services.api.submit import HEADER, header_key, submit_specs

_SUBMITTED = b'","status":"Submitted","message":"Job submitted successfully"}'
_SEED_LIST_LIMIT = 1000


async def submit(request: Request) -> Response:
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
    body = b'{"job_id":"' + done.job.job_id.encode() + _SUBMITTED
    return Response(body, status_code=200 if done.replayed else 201, media_type="application/json")


async def get_job(request: Request) -> JSONResponse:
    deps = deps_of(request)
    if "id" not in request.query_params:
        raise ValidationError("the id query parameter is required", field="id")
    job = await owned_job(deps, user_of(request), request.query_params.get("id"))
    return JSONResponse(job_seed(job, await deps.ingest.load_payload(job)))


async def list_jobs(request: Request) -> JSONResponse:
    deps = deps_of(request)
    page = await deps.store.list_jobs(
        ListJobsParams(user_id=user_of(request), limit=_SEED_LIST_LIMIT)
    )
    return JSONResponse([job_seed_summary(job) for job in page.items])


async def health(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(metrics_text(deps_of(request).metrics), media_type=CONTENT_TYPE_LATEST)
