"""``GET /v1/schedules/preview``: the next fires of a schedule before any job exists."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from starlette.requests import Request

from chronoq.domain.clock import format_rfc3339, parse_rfc3339
from chronoq.domain.preview import MAX_PREVIEW, Preview, preview
from chronoq.domain.schedules import DstGap, DstRepeat
from chronoq.errors import ValidationError
from chronoq.services.api.http import JSONResponse, user_of
from chronoq.services.api.routes_jobs import deps_of

DEFAULT_COUNT = 10
E = TypeVar("E", bound=StrEnum)


async def schedule_preview(request: Request) -> JSONResponse:
    user_of(request)  # the same caller rules as every /v1 route
    query = request.query_params
    expression = query.get("cron_schedule")
    if not expression:
        raise ValidationError("cron_schedule is required", field="cron_schedule")
    for name in ("cron_schedule", "timezone", "after", "count", "dst_gap", "dst_repeat"):
        if "\x00" in (query.get(name) or ""):
            raise ValidationError(f"{name} must not contain a NUL character", field=name)
    after = deps_of(request).clock.now()
    if raw_after := query.get("after"):
        try:
            after = parse_rfc3339(raw_after)
        except ValueError:
            raise ValidationError(
                f"after {raw_after[:80]!r} is not an RFC 3339 timestamp", field="after"
            ) from None
    result = preview(
        expression,
        query.get("timezone") or None,
        after,
        _count(query.get("count")),
        dst_gap=_choice(DstGap, "dst_gap", query.get("dst_gap")),
        dst_repeat=_choice(DstRepeat, "dst_repeat", query.get("dst_repeat")),
    )
    return JSONResponse(preview_json(result))


def preview_json(result: Preview) -> dict[str, Any]:
    return {
        "cron_schedule": result.expression,
        "timezone": result.timezone,
        "description": result.description,
        "fires": [
            {
                "at": format_rfc3339(fire.at),
                "local": fire.local.isoformat(),
                "dst": fire.dst,
            }
            for fire in result.fires
        ],
    }


def _choice(kind: type[E], name: str, raw: str | None) -> E:
    """A DST policy value (default ``auto``), or a 400 naming the field."""
    if raw is None or raw == "":
        return kind("auto")
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(v.value for v in kind)
        raise ValidationError(f"{name} must be one of {allowed}", field=name) from None


def _count(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_COUNT
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 3 or not 1 <= int(raw) <= MAX_PREVIEW:
        raise ValidationError(f"count must be an integer from 1 to {MAX_PREVIEW}", field="count")
    return int(raw)
