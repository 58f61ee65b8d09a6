"""The OpenAPI parts of issue 10: the job list's filters and its items' newest runs
(``services.api.listing``), and ``GET /v1/whoami``. ``openapi.openapi_document`` merges
them into the document."""

from __future__ import annotations

from typing import Any

from chronoq.domain.queues import MAX_QUEUE_LEN
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.ports.jobs import JobKind
from chronoq.services.api.listing import MAX_SEARCH_LEN, RECENT_RUNS
from chronoq.services.api.openapi import _NO_NUL, _TIME, _json, _nullable, _op, _ref
from chronoq.services.api.schemas import MAX_ID_LEN

LIST_QUERY = [
    {"name": "status", "in": "query", "required": False, "style": "form", "explode": True,
     "description": "only jobs in one of these statuses: repeat the parameter"
     " (status=FAILED&status=PAUSED) or separate them with commas",
     "schema": {"type": "array", "maxItems": len(JobStatus),
                "items": {"enum": [s.value for s in JobStatus]}}},
    {"name": "project_id", "in": "query", "required": False,
     "description": "only jobs of this project (exact)",
     "schema": {"type": "string", "maxLength": MAX_ID_LEN, "pattern": _NO_NUL}},
    {"name": "kind", "in": "query", "required": False,
     "description": "once: jobs without a schedule; recurring: jobs with a cron_schedule",
     "schema": {"enum": [k.value for k in JobKind]}},
    {"name": "queue", "in": "query", "required": False,
     "description": "only jobs of this queue (exact name; docs/queues.md); empty: any queue",
     "schema": {"type": "string", "maxLength": MAX_QUEUE_LEN,
                "pattern": f"^([A-Za-z0-9_.-]{{1,{MAX_QUEUE_LEN}}})?$"}},
    {"name": "q", "in": "query", "required": False,
     "description": "search: jobs whose id starts with it (ASCII letters case-folded) or"
     " whose project_id contains it (exact characters)",
     "schema": {"type": "string", "maxLength": MAX_SEARCH_LEN, "pattern": _NO_NUL}},
]  # fmt: skip

_RUN_BRIEF = {
    "type": "object",
    "required": ["run_id", "status", "attempt", "scheduled_for", "started_at", "completed_at"],
    "properties": {
        "run_id": {"type": "string", "format": "uuid"},
        "status": {"enum": [s.value for s in RunStatus]},
        "attempt": {"type": "integer", "minimum": 1},
        "scheduled_for": _TIME,
        "started_at": _nullable("string", format="date-time"),
        "completed_at": _nullable("string", format="date-time"),
    },
}
_LISTED = {
    "type": "object",
    "required": ["last_run", "recent_run_statuses"],
    "properties": {
        "last_run": {
            "description": "the job's newest run (newest fire, then newest attempt); null"
            " when it has none yet",
            "anyOf": [_ref("RunBrief"), {"type": "null"}],
        },
        "recent_run_statuses": {
            "description": f"statuses of the job's newest {RECENT_RUNS} runs, newest first",
            "type": "array",
            "maxItems": RECENT_RUNS,
            "items": {"enum": [s.value for s in RunStatus]},
        },
    },
}
_WHOAMI = {
    "type": "object",
    "required": ["user_id", "shell_allowed", "auth"],
    "properties": {
        "user_id": {"type": "string"},
        "shell_allowed": {"type": "boolean", "description": "whether cmd: jobs are accepted"},
        "auth": {"enum": ["header", "token"]},
    },
}


def add_listing(paths: dict[str, Any], components: dict[str, Any]) -> None:
    operation = paths["/v1/jobs"]["get"]
    user, *rest = operation["parameters"]  # the caller header, then the base list query
    cursor_and_limit = [p for p in rest if p["name"] in ("cursor", "limit")]
    operation["parameters"] = [user, *LIST_QUERY, *cursor_and_limit]
    components["RunBrief"] = _RUN_BRIEF
    components["ListedJob"] = {"allOf": [_ref("Job"), _LISTED]}
    page = operation["responses"]["200"]["content"]["application/json"]["schema"]
    page = {**page, "properties": {**page["properties"]}}
    page["properties"]["items"] = {"type": "array", "items": _ref("ListedJob")}
    operation["responses"]["200"] = _json(page, "success")
    paths["/v1/whoami"] = {
        "get": _op("Who these credentials are", (200, _WHOAMI), (400, 401)),
    }
