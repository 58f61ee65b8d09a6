"""The OpenAPI parts of issue 9: schedule policies and idempotency keys on submissions,
the job control operations (pause, resume, trigger, PATCH, purge) and the fire ledger.
``openapi.openapi_document`` merges them into the document."""

from __future__ import annotations

from typing import Any

import msgspec

from chronoq.domain.policies import Misfire, Overlap, SkipReason
from chronoq.domain.queues import MAX_PRIORITY, MAX_QUEUE_LEN, MIN_PRIORITY
from chronoq.domain.schedules import DstGap, DstRepeat
from chronoq.domain.states import RunStatus
from chronoq.services.api.openapi import (
    _JOB_ID,
    _NOT_BLANK,
    _RFC3339,
    _TIME,
    JOB_IN_CONSTRAINTS,
    _json,
    _nullable,
    _op,
    _ref,
    user_limited,
)
from chronoq.services.api.routes_control import MAX_FIRES_LIMIT
from chronoq.services.api.schemas_control import JobPatchIn
from chronoq.services.api.schemas_policies import MAX_FIRES, MAX_JITTER, MAX_KEY_LEN, MAX_WINDOW

_SECONDS = {"minimum": 0}
POLICY_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "overlap": {
        "enum": [o.value for o in Overlap],
        "description": "recurring jobs only: a fire due while the previous run still runs."
        " skip (default), allow, buffer_one, cancel_previous (docs/policies.md)",
    },
    "misfire": {
        "enum": [m.value for m in Misfire],
        "description": "fires missed while nothing could run them: run_once (default,"
        " coalesce), run_all (within catch_up_window_seconds), skip",
    },
    "catch_up_window_seconds": {
        **_SECONDS,
        "maximum": MAX_WINDOW,
        "description": "misfire run_all only (recurring jobs): how far back missed fires run"
        " (default 3600)",
    },
    "start_deadline_seconds": {
        **_SECONDS,
        "maximum": MAX_WINDOW,
        "description": "a fire not started this long after its time is SKIPPED (missed_deadline)",
    },
    "jitter_seconds": {
        **_SECONDS,
        "maximum": MAX_JITTER,
        "description": "each fire starts up to this much later, by a spread fixed per fire",
    },
    "start_at": {
        "format": "date-time",
        "pattern": _RFC3339,
        "description": "no fire before this instant (not with next_fire_at)",
    },
    "end_at": {
        "format": "date-time",
        "pattern": _RFC3339,
        "description": "recurring jobs only: no fire after this instant; after start_at, and"
        " some fire of the schedule must come before it (else 400 naming end_at)",
    },
    "max_fires": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_FIRES,
        "description": "recurring jobs only: at most this many nominal fires (runs and skips)",
    },
    "dst_gap": {
        "enum": [g.value for g in DstGap],
        "description": "recurring jobs with a timezone: a wall time DST skips fires at the"
        " transition (shift) or not at all (skip); auto (default): shift for fixed times,"
        " skip for interval-like schedules",
    },
    "dst_repeat": {
        "enum": [r.value for r in DstRepeat],
        "description": "recurring jobs with a timezone: a wall time DST repeats fires at the"
        " first occurrence or at both; auto (default): first for fixed times, both for"
        " interval-like schedules",
    },
}
QUEUE_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "queue": {
        "pattern": f"^[A-Za-z0-9_.-]{{1,{MAX_QUEUE_LEN}}}$",
        "minLength": 1,
        "maxLength": MAX_QUEUE_LEN,
        "description": "the queue its runs go to: only workers started with this queue in"
        " --queues (or with none) take them (default: default; docs/queues.md)",
    },
    "priority": {
        "type": "integer",
        "minimum": MIN_PRIORITY,
        "maximum": MAX_PRIORITY,
        "description": "among runs ready to start, higher goes first (default 0)",
    },
}
"""Queues and priorities (``domain.queues``): on submissions and changes."""
_KEY_DOC = (
    "replays of the same body answer 200 with the original job; another body under the same"
    " key answers 409 idempotency_key_reused (per user, kept --idempotency-retention)"
)
KEY_CONSTRAINTS = {
    "minLength": 1,
    "maxLength": MAX_KEY_LEN,
    "pattern": _NOT_BLANK,
    "description": _KEY_DOC,
}
_ONE_SHOT_REFUSES = (
    "overlap", "catch_up_window_seconds", "end_at", "max_fires", "dst_gap", "dst_repeat",
)  # fmt: skip
_HEADER_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": _KEY_DOC + "; or the idempotency_key field (the same value, if both)",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LEN,
               "pattern": "^[!-~]([ -~]*[!-~])?$"},
}  # fmt: skip


def _nonnull(kind: str | list[str]) -> dict[str, Any]:
    return {"properties": {}} if kind == "null" else {"type": kind}


def constrain_policies(job_in: dict[str, Any]) -> None:
    """The policy fields of a submission, and the rules between fields."""
    properties = job_in["properties"]
    constraints = {**POLICY_CONSTRAINTS, **QUEUE_CONSTRAINTS, "idempotency_key": KEY_CONSTRAINTS}
    for name, extra in constraints.items():
        schema = properties[name]
        target = next((b for b in schema.get("anyOf", []) if b.get("type") != "null"), schema)
        target.update(extra)
    timezone = {"if": job_in.pop("if"), "then": job_in.pop("then")}
    null = {"type": "null"}
    job_in["allOf"] = [
        timezone,
        {  # a one-shot job (no cron_schedule) has one fire
            "if": {"properties": {"cron_schedule": null}},
            "then": {"properties": {name: null for name in _ONE_SHOT_REFUSES}},
        },
        {  # a catch-up window only with misfire run_all
            "if": {"required": ["catch_up_window_seconds"],
                   "properties": {"catch_up_window_seconds": {"type": "number"}}},
            "then": {"required": ["misfire"], "properties": {"misfire": {"const": "run_all"}}},
        },
        *(
            {  # a DST policy needs a timezone (UTC has no DST)
                "if": {"required": [name], "properties": {name: {"type": "string"}}},
                "then": {"required": ["timezone"], "properties": {"timezone": {"type": "string"}}},
            }
            for name in ("dst_gap", "dst_repeat")
        ),
        {  # start_at and next_fire_at both set the first fire
            "if": {"required": ["start_at"], "properties": {"start_at": {"type": "string"}}},
            "then": {"properties": {"next_fire_at": null}},
        },
    ]  # fmt: skip


JOB_PROPERTIES: dict[str, Any] = {
    "overlap": {"enum": [o.value for o in Overlap]},
    "misfire": {"enum": [m.value for m in Misfire]},
    "catch_up_window_seconds": _nullable("number"),
    "start_deadline_seconds": _nullable("number"),
    "jitter_seconds": {"type": "number", "minimum": 0},
    "start_at": _nullable("string", format="date-time"),
    "end_at": _nullable("string", format="date-time"),
    "max_fires": _nullable("integer"),
    "dst_gap": {"enum": [g.value for g in DstGap]},
    "dst_repeat": {"enum": [r.value for r in DstRepeat]},
    "fire_count": {
        "type": "integer",
        "minimum": 0,
        "description": "nominal fires so far (runs and skips; max_fires counts these)",
    },
    "paused_fire_at": _nullable(
        "string", format="date-time", description="while PAUSED: the fire it holds"
    ),
    "idempotency_key": _nullable("string"),
    "queue": {"type": "string", "description": "the queue its runs go to"},
    "priority": {"type": "integer", "description": "higher dispatches first"},
}
_RUN_QUEUE = {
    "queue": {"type": "string", "description": "its job's queue when the run was created"},
    "priority": {"type": "integer", "description": "its job's priority when created"},
}
_FIRE = {
    "type": "object",
    "required": ["scheduled_for", "last_scheduled_for", "count", "outcome", "reason", "run_id",
                 "attempts", "manual", "recorded_at"],
    "properties": {
        "scheduled_for": _TIME,
        "last_scheduled_for": {**_TIME, "description": "a span of skipped fires: its last"},
        "count": _nullable("integer", minimum=0,
                           description="nominal fires covered (null: too many to count)"),
        "outcome": {"enum": [s.value for s in RunStatus]},
        "reason": {"enum": [r.value for r in SkipReason] + [None],
                   "description": "why it was SKIPPED"},
        "run_id": _nullable("string", format="uuid"),
        "attempts": {"type": "integer", "minimum": 0},
        "manual": {"type": "boolean", "description": "a :trigger, not the schedule"},
        "recorded_at": _TIME,
    },
}  # fmt: skip
_FLAG = {"type": "boolean", "default": False}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}  # fmt: skip


def control_paths() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(paths, components)``: the control operations and the schemas they use."""
    (patch,), components = msgspec.json.schema_components(
        [JobPatchIn], ref_template="#/components/schemas/{name}"
    )
    patch_in = components["JobPatchIn"]
    for name, schema in patch_in["properties"].items():
        extra = {**JOB_IN_CONSTRAINTS, **POLICY_CONSTRAINTS, **QUEUE_CONSTRAINTS}.get(name)
        target = next((b for b in schema.get("anyOf", []) if b.get("type") != "null"), schema)
        if extra is not None:
            target.update({k: v for k, v in extra.items() if k != "description"})
    patch_in["minProperties"] = 1
    patch_in["description"] = (
        "The fields to change (a JSON merge patch): null resets a nullable field or a policy"
        " to its default. cron_schedule and timezone: recurring jobs only; next_fire_at:"
        " one-shot jobs only"
    )
    job = _ref("Job")
    purged = {"type": "object", "required": ["job_id", "purged"],
              "properties": {"job_id": {"type": "string", "format": "uuid"},
                             "purged": {"const": True}}}  # fmt: skip
    fires = {"type": "object", "required": ["items"],
             "properties": {"items": {"type": "array", "items": _ref("Fire")}}}  # fmt: skip
    catch_up = _query(
        "catch_up",
        _FLAG,
        "true: the fires missed while paused go to the"
        " misfire policy; false (default): they are SKIPPED (paused)",
    )
    purge = _query(
        "purge",
        _FLAG,
        "true: delete the job with its runs, outputs, ledger and"
        " blobs (200 {job_id, purged}); false (default): cancel it",
    )
    window = [
        _query("from", {"type": "string", "format": "date-time", "pattern": _RFC3339},
               "oldest fire (default: to - 24 h); a skipped span overlapping it is listed"),
        _query("to", {"type": "string", "format": "date-time", "pattern": _RFC3339},
               "newest fire (default: now); from must not be after it"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_FIRES_LIMIT,
                         "default": 100}, "at most this many entries"),
    ]  # fmt: skip
    paths = {
        "/v1/jobs/{job_id}:pause": {"post": _op(
            "Pause a job: no fires until resumed (a run due or running goes on); queued"
            " future runs are SKIPPED (paused). A finished or paused job is returned as is",
            (200, job), (400, 401, 404, 409), parameters=[_JOB_ID])},
        "/v1/jobs/{job_id}:resume": {"post": _op(
            "Resume a paused job; other jobs are returned as is",
            (200, job), (400, 401, 404, 409), parameters=[_JOB_ID, catch_up])},
        "/v1/jobs/{job_id}:trigger": {"post": user_limited(_op(
            "Fire a recurring job now (a manual run; the overlap policy applies; the"
            " schedule does not move). 409: the job is finished or a one-shot job",
            (201, _ref("Run")), (400, 401, 404, 409), parameters=[_JOB_ID]),
            "too_many_fires: the user has had --user-max-fires-per-minute fires in the last"
            " 60 seconds; no run was made (docs/limits.md)")},
        "/v1/jobs/{job_id}/fires": {"get": _op(
            "The job's fire ledger: each nominal fire with its one outcome (a run, or"
            " SKIPPED with a reason), oldest first",
            (200, fires), (400, 401, 404, 409), parameters=[_JOB_ID, *window])},
    }  # fmt: skip
    patch_op = _op("Change a job from its next fire (a running run keeps what it has)."
                   " 409: the job is finished", (200, job),
                   (400, 401, 403, 404, 409, 413, 415, 503),
                   parameters=[_JOB_ID],
                   requestBody={"required": True,
                                "content": {"application/json": {"schema": patch}}})  # fmt: skip
    delete_op = _op("Cancel a job, or with purge=true delete it and all it left",
                    (200, {"anyOf": [job, purged]}), (400, 401, 404, 409),
                    parameters=[_JOB_ID, purge])  # fmt: skip
    components["Fire"] = _FIRE
    return paths, {"components": components, "patch": patch_op, "delete": delete_op}


def add_control(paths: dict[str, Any], components: dict[str, Any]) -> None:
    """Merge issue 9's operations, fields and schemas into a document being built."""
    constrain_policies(components["JobIn"])
    job = components["Job"] = {**components["Job"]}
    job["properties"] = {**job["properties"], **JOB_PROPERTIES}
    run = components["Run"] = {**components["Run"]}
    run["properties"] = {
        **run["properties"],
        "manual": {"type": "boolean", "description": "created by :trigger"},
        **_RUN_QUEUE,
    }
    control, extra = control_paths()
    paths.update(control)
    components.update(extra["components"])
    paths["/v1/jobs/{job_id}"]["patch"] = extra["patch"]
    paths["/v1/jobs/{job_id}"]["delete"] = extra["delete"]
    for path in ("/v1/jobs", "/submit"):
        operation = paths[path]["post"]
        operation["parameters"].append(_HEADER_KEY)
        responses = operation["responses"]
        replay = {**responses["201"], "description": "a replayed Idempotency-Key: the original"}
        responses["200"] = replay
        responses["409"] = _json(_ref("Error"), "the key was used with another body")
    _link_operations(paths)
    batch = paths["/v1/jobs:batch"]["post"]["responses"]
    batch["200"] = {**batch["201"], "description": "every item replayed an idempotency_key"}
    batch["409"] = _json(_ref("Error"), "an item's key was used with another body")


_LINKED = {
    "GetJob": ("/v1/jobs/{job_id}", "get"),
    "ChangeJob": ("/v1/jobs/{job_id}", "patch"),
    "DeleteJob": ("/v1/jobs/{job_id}", "delete"),
    "PauseJob": ("/v1/jobs/{job_id}:pause", "post"),
    "ResumeJob": ("/v1/jobs/{job_id}:resume", "post"),
    "TriggerJob": ("/v1/jobs/{job_id}:trigger", "post"),
    "JobFires": ("/v1/jobs/{job_id}/fires", "get"),
    "JobRuns": ("/v1/jobs/{job_id}/runs", "get"),
}


def _link_operations(paths: dict[str, Any]) -> None:
    """OpenAPI links from a created job to what can be done with it (stateful fuzzing,
    and readers: which operations take the job_id of a 201)."""
    for path, method in _LINKED.values():
        operation = paths[path][method]
        operation.setdefault("operationId", _operation_id(path, method))
    links = {
        name: {
            "operationId": paths[path][method]["operationId"],
            "parameters": {"job_id": "$response.body#/job_id"},
        }
        for name, (path, method) in _LINKED.items()
    }
    created = paths["/v1/jobs"]["post"]["responses"]["201"]
    created["links"] = links


def _operation_id(path: str, method: str) -> str:
    words = path.replace("{job_id}", "").replace(":", "/").strip("/").split("/")
    return method + "".join(w.capitalize() for w in words if w and w != "v1") + "ById"
