"""The OpenAPI 3.1 document, built from the msgspec types that validate requests."""

from __future__ import annotations

from typing import Any

import msgspec

from chronoq.domain.jobs import LIST_OUTPUT_CHARS
from chronoq.domain.preview import GAP, MAX_PREVIEW, OFFSET_CHANGE, REPEATED
from chronoq.domain.schedules import DstGap, DstRepeat
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.domain.zones import known_timezones
from chronoq.services.api.schemas import (
    MAX_BATCH,
    MAX_ID_LEN,
    MAX_RETRIES,
    MAX_TIMEOUT,
    MIN_TIMEOUT,
    BatchIn,
    JobIn,
)


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


_TIME = {"type": "string", "format": "date-time"}
_NO_NUL = "^[^\\u0000]*$"
# What Python's str.strip() removes (validation's "blank"), spelled out: ECMA-262's \s, the
# regex dialect of JSON Schema, differs (it lacks U+001C-U+001F and U+0085, adds U+FEFF).
_SPACE = (
    "\\t\\n\\u000b\\f\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
_NOT_BLANK = f"^[^\\u0000]*[^{_SPACE}\\u0000][^\\u0000]*$"
_RFC3339 = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?"
    "([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_ASCII_NOT_BLANK = "^[ -~]*[!-~][ -~]*$"
# What to_spec enforces beyond the types, stated in the schema so schema and validation agree.
JOB_IN_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "project_id": {"minLength": 1, "maxLength": MAX_ID_LEN, "pattern": _NOT_BLANK},
    "payload": {
        "pattern": _NO_NUL,
        "description": "cmd:<shell>, sleep:<Go duration>, anything else is echoed; no NUL",
    },
    "cron_schedule": {
        "minLength": 1,
        "pattern": _ASCII_NOT_BLANK,
        "description": "cron (5 or 6 fields), @every <Go duration>, @hourly...; ASCII. The"
        " server checks the cron syntax itself (JSON Schema cannot state it): an expression"
        " it cannot parse is a 400 naming cron_schedule",
    },
    "next_fire_at": {"format": "date-time", "pattern": _RFC3339},
    "max_retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES},
    "timeout_seconds": {"minimum": MIN_TIMEOUT, "maximum": MAX_TIMEOUT},
    "timezone": {
        "enum": sorted(known_timezones()),
        "description": "IANA name; only with a cron_schedule",
    },
}
_JOB = {
    "type": "object",
    "required": ["job_id", "project_id", "payload", "status", "created_at", "updated_at"],
    "properties": {
        "job_id": {"type": "string", "format": "uuid"},
        "project_id": {"type": "string"},
        "payload": _nullable(
            "string",
            description="null in lists when offloaded (payload_offloaded): GET /v1/jobs/{id}"
            " returns it",
        ),
        "payload_offloaded": {"type": "boolean", "description": "kept in the blob store"},
        "payload_size": {"type": "integer", "minimum": 0, "description": "bytes (UTF-8)"},
        "status": {
            "enum": [s.value for s in JobStatus],
            "description": "ACCEPTED: with buffered ingestion (--ingest log or redis://), the"
            " job is durably in the submission log and not yet in the store; GET"
            " /v1/jobs/{id} shows it, lists do not (docs/api.md)",
        },
        "cron_schedule": _nullable("string"),
        "timezone": _nullable("string"),
        "next_fire_at": _nullable("string", format="date-time"),
        "max_retries": {"type": "integer"},
        "timeout_seconds": _nullable("number"),
        "created_at": _TIME,
        "updated_at": _TIME,
    },
}
_SEED_JOB = {
    "type": "object",
    "required": ["job_id", "project_id", "payload", "status", "next_fire_at", "created_at"],
    "properties": {
        "job_id": {"type": "string", "format": "uuid"},
        "project_id": {"type": "string"},
        "payload": {"type": "string"},
        "status": {"enum": [s.value for s in JobStatus]},
        "next_fire_at": _nullable("string", format="date-time"),
        "created_at": _TIME,
        "cron_schedule": {"type": "string", "description": "present when the job has one"},
    },
    "additionalProperties": False,
}
_SEED_SUMMARY = {
    "type": "object",
    "required": ["job_id", "status", "next_fire_at", "created_at"],
    "properties": {
        "job_id": {"type": "string", "format": "uuid"},
        "status": {"enum": [s.value for s in JobStatus]},
        "next_fire_at": _nullable("string", format="date-time"),
        "created_at": _TIME,
    },
    "additionalProperties": False,
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
        "output": _nullable(
            "string",
            description=f"in lists, the first {LIST_OUTPUT_CHARS} characters at most",
        ),
        "output_truncated": {
            "type": "boolean",
            "description": "output is cut here; GET …/runs/{run_id}/output streams it whole",
        },
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
_USER = {
    "name": "X-User-ID",
    "in": "header",
    "required": True,
    "description": "Exactly one; 1-200 characters, not blank",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ID_LEN,
        "pattern": f"[^{_SPACE}]",
    },
}
SECURITY_SCHEMES = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "cq_ + 43 URL-safe base64 characters",
        "description": "--auth token: a token from `chronoq token create`; it decides the"
        " user (X-User-ID is ignored). Missing, malformed, unknown, expired or revoked: 401"
        " (missing_token / invalid_token); too many failures from one address: 429 with"
        " Retry-After (docs/auth.md)",
    },
    "userHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-User-ID",
        "description": "--auth header (a loopback listener, or behind a gateway that sets it):"
        " the X-User-ID parameter of each operation; missing: 401 missing_user_id",
    },
}
_UUID = {"type": "string", "format": "uuid", "minLength": 1}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": _UUID}
_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": _UUID}
_LIST_QUERY = [
    {"name": "status", "in": "query", "required": False,
     "schema": {"enum": [s.value for s in JobStatus]}},
    {"name": "project_id", "in": "query", "required": False,
     "schema": {"type": "string", "maxLength": MAX_ID_LEN, "pattern": _NO_NUL}},
    {"name": "cursor", "in": "query", "required": False,
     "description": "next_cursor of the previous page (opaque); absent or empty: the first",
     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"}},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
]  # fmt: skip


_PREVIEW_QUERY = [
    {"name": "cron_schedule", "in": "query", "required": True,
     "schema": {**JOB_IN_CONSTRAINTS["cron_schedule"], "type": "string"}},
    {"name": "timezone", "in": "query", "required": False,
     "schema": {"type": "string", "enum": sorted(known_timezones())}},
    {"name": "count", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PREVIEW, "default": 10}},
    {"name": "after", "in": "query", "required": False,
     "description": "start after this instant (default: now)",
     "schema": {"type": "string", "format": "date-time", "pattern": _RFC3339}},
    {"name": "dst_gap", "in": "query", "required": False,
     "description": "the job's DST policy for skipped wall times (docs/policies.md)",
     "schema": {"type": "string", "enum": [v.value for v in DstGap], "default": "auto"}},
    {"name": "dst_repeat", "in": "query", "required": False,
     "description": "the job's DST policy for repeated wall times (docs/policies.md)",
     "schema": {"type": "string", "enum": [v.value for v in DstRepeat], "default": "auto"}},
]  # fmt: skip
_PREVIEW = {
    "type": "object",
    "required": ["cron_schedule", "timezone", "description", "fires"],
    "properties": {
        "cron_schedule": {"type": "string"},
        "timezone": {"type": "string"},
        "description": {"type": "string", "description": "the schedule in words"},
        "fires": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["at", "local", "dst"],
                "properties": {
                    "at": _TIME,
                    "local": {"type": "string", "description": "wall time with its offset"},
                    "dst": {
                        "enum": [GAP, REPEATED, OFFSET_CHANGE, None],
                        "description": "gap: the wall time does not exist that day (spring"
                        " forward), fired at the transition; repeated: it occurs twice (fall"
                        " back); offset_change: the UTC offset changed since the previous fire",
                    },
                },
            },
        },
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json(_ref("Error"), "error") for code in (*codes, 421)}


def _constrain(job_in: dict[str, Any], batch_in: dict[str, Any]) -> None:
    """Add what ``to_spec`` checks beyond the types (the string branch of a nullable)."""
    properties = job_in["properties"]
    for name, extra in JOB_IN_CONSTRAINTS.items():
        schema = properties[name]
        target = next((b for b in schema.get("anyOf", []) if b.get("type") != "null"), schema)
        target.update(extra)
    # A timezone (not null) needs a cron_schedule (not null): dependentRequired would count
    # an explicit null as present.
    job_in["if"] = {"required": ["timezone"], "properties": {"timezone": {"type": "string"}}}
    job_in["then"] = {
        "required": ["cron_schedule"],
        "properties": {"cron_schedule": {"type": "string"}},
    }
    batch_in["properties"]["jobs"].update(minItems=1, maxItems=MAX_BATCH)


def _op(summary: str, ok: tuple[int, dict[str, Any]], errors: tuple[int, ...], **extra: Any) -> Any:
    status, schema = ok
    return {
        "summary": summary,
        "parameters": [_USER, *extra.pop("parameters", [])],
        "responses": {str(status): _json(schema, "success"), **_errors(*errors)},
        **extra,
    }


def _too_many(description: str) -> dict[str, Any]:
    return {
        **_json(_ref("Error"), description),
        "headers": {
            "Retry-After": {
                "description": "seconds after which trying again may succeed",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    }


def user_limited(operation: dict[str, Any], what: str) -> dict[str, Any]:
    """Declare the 429 of a per-user limit (docs/limits.md) on ``operation``."""
    operation["responses"]["429"] = _too_many(what)
    return operation


ACTIVE_LIMITED = (
    "too_many_active_jobs: the user would have more jobs not finished than"
    " --user-max-active-jobs allows; nothing was stored (docs/limits.md)"
)


def _token_mode(operation: dict[str, Any]) -> None:
    """``--auth token``: the bearer token instead of the X-User-ID parameter, and the 429
    of the failure limit (every operation already declares its 401)."""
    operation["parameters"] = [p for p in operation["parameters"] if p is not _USER]
    operation["security"] = [{"bearerToken": []}]
    failures = "too_many_failures: too many failed authentications from this address"
    limited = operation["responses"].get("429")
    if limited is not None:
        failures = f"{limited['description']}; or {failures}"
    operation["responses"]["429"] = _too_many(failures)


def openapi_document(auth: str = "header") -> dict[str, Any]:
    """The document of a server in the ``auth`` mode (``header`` or ``token``)."""
    (job_in, batch_in), components = msgspec.json.schema_components(
        [JobIn, BatchIn], ref_template="#/components/schemas/{name}"
    )
    _constrain(components["JobIn"], components["BatchIn"])
    body = {"required": True, "content": {"application/json": {"schema": job_in}}}
    batch_body = {"required": True, "content": {"application/json": {"schema": batch_in}}}
    jobs = {"type": "array", "items": _ref("Job")}
    page = {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {"items": jobs, "next_cursor": _nullable("string")},
    }
    created = {"type": "object", "required": ["items"], "properties": {"items": jobs}}
    runs = {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Run")}}}
    submitted = {
        "type": "object",
        "required": ["job_id", "status", "message"],
        "properties": {k: {"type": "string"} for k in ("job_id", "status", "message")},
    }
    id_query = [{"name": "id", "in": "query", "required": True, "schema": _UUID}]
    seed_list = {"type": "array", "items": _ref("SeedJobSummary")}
    paths = {
        "/submit": {
            "post": user_limited(_op("Submit a job (seed API)", (201, submitted),
                                     (400, 401, 403, 413, 415, 503),
                                     requestBody=body), ACTIVE_LIMITED)
        },
        "/job": {"get": _op("Get a job (seed API)", (200, _ref("SeedJob")), (400, 401, 404),
                            parameters=id_query)},
        "/jobs": {"get": _op("List your jobs (seed API)", (200, seed_list), (400, 401))},
        "/v1/jobs": {
            "post": user_limited(_op("Create a job", (201, _ref("Job")),
                                     (400, 401, 403, 413, 415, 503), requestBody=body),
                                 ACTIVE_LIMITED),
            "get": _op("List your jobs", (200, page), (400, 401), parameters=_LIST_QUERY),
        },
        "/v1/jobs:batch": {
            "post": user_limited(_op("Create up to 1000 jobs, all or nothing", (201, created),
                                     (400, 401, 403, 413, 415, 503), requestBody=batch_body),
                                 ACTIVE_LIMITED)
        },
        "/v1/jobs/{job_id}": {
            "get": _op("Get a job", (200, _ref("Job")), (400, 401, 404), parameters=[_JOB_ID]),
            "delete": _op("Cancel a job", (200, _ref("Job")), (400, 401, 404),
                          parameters=[_JOB_ID]),
        },
        "/v1/jobs/{job_id}/runs": {
            "get": _op("A job's runs, newest first", (200, runs), (400, 401, 404),
                       parameters=[_JOB_ID, _LIST_QUERY[-1]])
        },
        "/v1/schedules/preview": {
            "get": _op("The next fires of a schedule, in words, DST marked", (200, _PREVIEW),
                       (400, 401), parameters=_PREVIEW_QUERY)
        },
        "/v1/jobs/{job_id}/runs/{run_id}/output": {
            "get": {
                **_op("A run's whole output, streamed as text", (200, {}), (400, 401, 404, 503),
                      parameters=[_JOB_ID, _RUN_ID],
                      description="Every byte of the output: from the store, or from the blob"
                      " store when the worker offloaded it (larger than output_offload_bytes;"
                      " the run lists with output_truncated). 503: the blob store holding"
                      " it is unavailable; retry later."),
                "responses": {
                    "200": {"description": "the output (empty if none yet)",
                            "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **_errors(400, 401, 404, 503),
                },
            }
        },
    }  # fmt: skip
    components.update(
        {"Job": _JOB, "SeedJob": _SEED_JOB, "SeedJobSummary": _SEED_SUMMARY, "Run": _RUN,
         "Error": _ERROR}
    )  # fmt: skip
    from chronoq.services.api.openapi_control import add_control
    from chronoq.services.api.openapi_list import add_listing
    from chronoq.services.api.openapi_live import add_live

    add_control(paths, components)
    add_listing(paths, components)
    add_live(paths)
    if auth == "token":
        for item in paths.values():
            for operation in item.values():
                _token_mode(operation)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chronoq", "version": "0.1.0"},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }
