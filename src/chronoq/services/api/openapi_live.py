"""The OpenAPI part of issue 10.3: a run's output as server-sent events, live.
``openapi.openapi_document`` merges it into the document."""

from __future__ import annotations

from typing import Any

from chronoq.domain.live_output import LIVE_OUTPUT_BYTES
from chronoq.services.api.live_stream import (
    MAX_STREAMS,
    MAX_STREAMS_PER_USER,
    POLL_SECONDS,
    STREAM_SECONDS,
)
from chronoq.services.api.openapi import _RUN_ID, _json, _op, _ref

_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "resume after this offset (the id of the last event received)",
    "schema": {"type": "string", "pattern": "^[0-9]{0,15}$"},
}
_DESCRIPTION = (
    "text/event-stream. `output` events: `id` = the byte offset (UTF-8 of the cleaned output)"
    ' after the event, `data` = {"start": offset of this text, "text": "..."}; a `start` past'
    " the reader's offset means the bytes between are no longer kept (the newest"
    f" {LIVE_OUTPUT_BYTES} bytes of a running run are). Then one `end` event, `data` ="
    ' {"status", "exit_code", "error_message"}, and the stream closes (close your EventSource'
    " on it). A finished run sends the rest of its final output and `end` at once. The store"
    f" is polled every {POLL_SECONDS:g} s; a stream closes without `end` after"
    f" {STREAM_SECONDS:g} s (reconnect with Last-Event-ID). At most {MAX_STREAMS_PER_USER}"
    f" streams per user and {MAX_STREAMS} per server process at once: 429 too_many_streams."
)


_OUTPUT_DATA = {
    "type": "object",
    "required": ["start", "text"],
    "properties": {"start": {"type": "integer", "minimum": 0}, "text": {"type": "string"}},
}
_END_DATA = {
    "type": "object",
    "required": ["status", "exit_code", "error_message"],
    "properties": {
        "status": {"type": ["string", "null"]},
        "exit_code": {"type": ["integer", "null"]},
        "error_message": {"type": ["string", "null"]},
    },
}
EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["output", "end"]},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "retry": {"type": "integer"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"oneOf": [_OUTPUT_DATA, _END_DATA]},
        },
    },
}
"""One server-sent event (OpenAPI 3.1: a ``text/event-stream`` schema describes each event)."""


def add_live(paths: dict[str, Any]) -> None:
    ok = {"description": "the event stream, one event per schema instance",
          "content": {"text/event-stream": {"schema": EVENT}}}  # fmt: skip
    operation = _op(
        "A run's output as server-sent events, live while it runs",
        (200, {}),
        (400, 401, 404, 503),
        parameters=[_RUN_ID, _LAST_EVENT_ID],
        description=_DESCRIPTION,
    )
    operation["responses"]["200"] = ok
    operation["responses"]["429"] = {
        **_json(_ref("Error"), "too many output streams open"),
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    }
    paths["/v1/runs/{run_id}/output/stream"] = {"get": operation}
