"""The OpenAPI 3.1 document, built from the msgspec types that validate requests."""

from __future__ import annotations

from typing import Any

import msgspec

from chronoq.domain.states import JobStatus, RunStatus
from chronoq.services.api.schemas import BatchIn, JobIn


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


_TIME = {"type": "string", "format": "date-time"}
_JOB = {
    "type": "object",
    "required": ["job_id", "project_id", "payload", "status", "created_at", "updated_at"],
    "properties": {
        "job_id": {"type": "string", "format": "uuid"},
        "project_id": {"type": "string"},
        "payload": {"type": "string"},
        "status": {"enum": [s.value for s in JobStatus]},
        "cron_schedule": _nullable("string"),
        "timezone": _nullable("string"),
        "next_fire_at": _nullable("string", format="date-time"),
        "max_retries": {"type": "integer"},
        "timeout_seconds": _nullable("number"),
        "created_at": _TIME,
        "updated_at": _TIME,
    },
}
_RUN = {
    "type": "object",
    "properties": {
        "run_id": {"type": "string", "format": "uuid"},
        "job_id": {"type": "string", "format": "uuid"},
        "attempt": {"type": "integer", "minimum": 1},
        "status": {"enum": [s.value for s in RunStatus]},
        "scheduled_for": _TIME,
        "triggered_at": _TIME,
        "started_at": _nullable("string", format="date-time"),
        "completed_at": _nullable("string", format="date-time"),
        "output": _nullable("string"),
        "exit_code": _nullable("integer"),
        "worker_id": _nullable("string"),
        "error_message": _nullable("string"),
        "interruptions": {
            "type": "integer",
            "minimum": 0,
            "description": "Earlier attempts of this fire cut off by a lost worker (INTERRUPTED)",
        },
    },
}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": _nullable("string"),
            },
        }
    },
}
_USER = {"name": "X-User-ID", "in": "header", "required": True, "schema": {"type": "string"}}
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json(_ref("Error"), "error") for code in codes}


def _op(summary: str, ok: tuple[int, dict[str, Any]], errors: tuple[int, ...], **extra: Any) -> Any:
    status, schema = ok
    return {
        "summary": summary,
        "parameters": [_USER, *extra.pop("parameters", [])],
        "responses": {str(status): _json(schema, "success"), **_errors(*errors)},
        **extra,
    }


def openapi_document() -> dict[str, Any]:
    (job_in, batch_in), components = msgspec.json.schema_components(
        [JobIn, BatchIn], ref_template="#/components/schemas/{name}"
    )
    body = {"required": True, "content": {"application/json": {"schema": job_in}}}
    batch_body = {"required": True, "content": {"application/json": {"schema": batch_in}}}
    page = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref("Job")}, "next_cursor": {}},
    }
    runs = {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Run")}}}
    query = [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
        for n in ("status", "project_id", "cursor", "limit")
    ]
    submitted = {
        "type": "object",
        "properties": {k: {"type": "string"} for k in ("job_id", "status", "message")},
    }
    id_query = [{"name": "id", "in": "query", "required": True, "schema": {"type": "string"}}]
    paths = {
        "/submit": {
            "post": _op("Submit a job (seed API)", (201, submitted), (400, 401, 403, 413, 503),
                        requestBody=body)
        },
        "/job": {"get": _op("Get a job (seed API)", (200, _ref("Job")), (400, 401, 404),
                            parameters=id_query)},
        "/jobs": {"get": _op("List your jobs (seed API)", (200, {"type": "array"}), (401,))},
        "/v1/jobs": {
            "post": _op("Create a job", (201, _ref("Job")), (400, 401, 403, 413, 503),
                        requestBody=body),
            "get": _op("List your jobs", (200, page), (400, 401), parameters=query),
        },
        "/v1/jobs:batch": {
            "post": _op("Create up to 1000 jobs, all or nothing", (201, page),
                        (400, 401, 403, 413, 503), requestBody=batch_body)
        },
        "/v1/jobs/{job_id}": {
            "get": _op("Get a job", (200, _ref("Job")), (400, 401, 404), parameters=[_JOB_ID]),
            "delete": _op("Cancel a job", (200, _ref("Job")), (400, 401, 404),
                          parameters=[_JOB_ID]),
        },
        "/v1/jobs/{job_id}/runs": {
            "get": _op("A job's runs, newest first", (200, runs), (400, 401, 404),
                       parameters=[_JOB_ID])
        },
    }  # fmt: skip
    components.update({"Job": _JOB, "Run": _RUN, "Error": _ERROR})
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chronoq", "version": "0.1.0"},
        "paths": paths,
        "components": {"schemas": components},
    }
