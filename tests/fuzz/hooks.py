"""schemathesis hooks (loaded by ``tests/fuzz/schemathesis.toml``).

``filter_failure`` drops one kind of failure only: a schema-valid request refused with a
400 whose ``field`` is a constraint JSON Schema cannot express, and only when the value
is really invalid for Chronoq's own parser:

* ``cron_schedule`` (or ``jobs[N].cron_schedule``): ``parse_schedule`` refuses it;
* ``cursor``: list cursors are sealed (HMAC) per user; a made-up one never opens.

Anything else (a 5xx, a response outside its schema, any other refusal of valid data)
stays a failure.
"""

from __future__ import annotations

import json
import re
from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

from chronoq.domain.schedules import parse_schedule
from chronoq.errors import ValidationError

_CRON_FIELD = re.compile(r"(?:jobs\[(\d+)\]\.)?cron_schedule")


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
    match = _CRON_FIELD.fullmatch(field or "")
    if match is None:
        return True
    # the body of a submission, or the query of GET /v1/schedules/preview
    body = case.body if isinstance(case.body, dict) else (case.query or {})
    item = body.get("jobs", [{}])[int(match.group(1))] if match.group(1) else body
    return not _cron_invalid(item.get("cron_schedule"), item.get("timezone"))


def _cron_invalid(expression: Any, timezone: Any) -> bool:
    if not isinstance(expression, str):
        return False
    try:
        parse_schedule(expression, timezone if isinstance(timezone, str) else None)
    except ValidationError:
        return True
    return False
