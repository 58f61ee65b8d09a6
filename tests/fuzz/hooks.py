"""schemathesis hooks (loaded by ``tests/fuzz/schemathesis.toml``).

``filter_failure`` drops one kind of failure only: a schema-valid request refused with a
400 whose ``field`` is a constraint JSON Schema cannot express, and only when the value
is really invalid for Chronoq's own parser:

* ``cron_schedule`` (or ``jobs[N].cron_schedule``): ``parse_schedule`` refuses it;
* ``cursor``: list cursors are sealed (HMAC) per user; a made-up one never opens.
* ``end_at`` (or ``jobs[N].end_at``): it must be after ``start_at`` and after the
  schedule's first fire (a schedule with no fire left would never run) — both depend on
  another field or on the clock;
* ``idempotency_key``: the ``Idempotency-Key`` header and the field, both sent, differ;
* ``from`` of ``GET /v1/jobs/{id}/fires``: after ``to``;
* ``PATCH /v1/jobs/{id}``: a field that the stored job's kind refuses (a schedule on a
  one-shot job, ``next_fire_at`` on a recurring one, a recurring-only policy) or that
  clashes with the job's stored policies (``end_at`` before its ``start_at``, a catch-up
  window without ``run_all``): the message says which, and the rule depends on the job.

Anything else (a 5xx, a response outside its schema, any other refusal of valid data)
stays a failure.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

from chronoq.domain.clock import parse_rfc3339
from chronoq.domain.policies import Policies, first_fire_at
from chronoq.domain.schedules import parse_schedule
from chronoq.errors import ValidationError

_CRON_FIELD = re.compile(r"(?:jobs\[(\d+)\]\.)?cron_schedule")
_END_FIELD = re.compile(r"(?:jobs\[(\d+)\]\.)?end_at")
_JOB_DEPENDENT = re.compile(
    r"applies to (recurring|one-shot) jobs|applies only to misfire run_all"
    r"|end_at must be after start_at"
)


def _message(response: Any) -> str:
    try:
        return str(json.loads(response.content)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return ""


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return True
    try:
        field = json.loads(response.content)["error"]["field"]
    except (ValueError, KeyError, TypeError):
        return True
    if field == "cursor":
        return False
    body = case.body if isinstance(case.body, dict) else (case.query or {})
    if field == "idempotency_key":
        header = (case.headers or {}).get("Idempotency-Key")
        return not (header is not None and header != body.get("idempotency_key"))
    if field == "from" and isinstance(case.query, dict):
        try:
            return not parse_rfc3339(case.query["from"]) > parse_rfc3339(case.query["to"])
        except (KeyError, TypeError, ValueError):
            return True
    if case.method.upper() == "PATCH" and _JOB_DEPENDENT.search(_message(response)):
        return False
    end = _END_FIELD.fullmatch(field or "")
    if end is not None:
        item = body.get("jobs", [{}])[int(end.group(1))] if end.group(1) else body
        return not _never_fires(item)
    match = _CRON_FIELD.fullmatch(field or "")
    if match is None:
        return True
    # the body of a submission, or the query of GET /v1/schedules/preview
    item = body.get("jobs", [{}])[int(match.group(1))] if match.group(1) else body
    return not _cron_invalid(item.get("cron_schedule"), item.get("timezone"))


def _never_fires(item: dict[str, Any]) -> bool:
    """``end_at`` is not after ``start_at``, or no fire of the schedule comes before it."""
    try:
        start = parse_rfc3339(item["start_at"]) if item.get("start_at") else None
        end = parse_rfc3339(item["end_at"])
        if start is not None and end <= start:
            return True
        policies = Policies(start_at=start, end_at=end)
        return (
            first_fire_at(
                cron_schedule=item["cron_schedule"],
                timezone=item.get("timezone"),
                next_fire_at=parse_rfc3339(nxt) if (nxt := item.get("next_fire_at")) else None,
                policies=policies,
                now=datetime.now(UTC),
            )
            is None
        )
    except (KeyError, TypeError, ValueError, ValidationError):
        return False


def _cron_invalid(expression: Any, timezone: Any) -> bool:
    if not isinstance(expression, str):
        return False
    try:
        parse_schedule(expression, timezone if isinstance(timezone, str) else None)
    except ValidationError:
        return True
    return False
