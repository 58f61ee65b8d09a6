"""Following a run's output as it is made, for :class:`chronoq.client.Client` (issue 10.3):
``GET /v1/runs/{run_id}/output/stream`` (server-sent events). A mixin: ``Client``
supplies ``_http`` and ``_error_from``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from chronoq.errors import ChronoqError, UnavailableError

if TYPE_CHECKING:
    import httpx

Json = dict[str, Any]
CAUGHT_UP = {"event": "caught-up"}
"""Yielded once the output a running run had when the stream opened was given."""
_RECONNECTS = 5
"""Transport failures in a row before ``follow_output`` gives up."""


def parse_events(lines: Iterable[str]) -> Iterator[Json]:
    """Server-sent events as dicts: ``{"event": kind, "id": int | None, **data}``;
    the ``: caught-up`` comment as ``CAUGHT_UP``; other comments skipped."""
    kind: str = "message"
    event_id: int | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                body = json.loads("\n".join(data))
                yield {"event": kind, "id": event_id, **(body if isinstance(body, dict) else {})}
            kind, event_id, data = "message", None, []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "" and value.strip() == "caught-up":
            yield CAUGHT_UP
        elif name == "event":
            kind = value
        elif name == "id" and value.isdigit():
            event_id = int(value)
        elif name == "data":
            data.append(value)


class LiveMixin:
    """``follow_output``; see ``docs/api.md``."""

    _http: httpx.Client

    def _error_from(self, response: httpx.Response) -> ChronoqError:
        raise NotImplementedError

    def follow_output(self, run_id: str, *, after: int = 0) -> Iterator[Json]:
        """The run's output as it is made: ``{"event": "output", "id", "start", "text"}``
        dicts (``id``: the byte offset after the text), ``CAUGHT_UP`` once, then one
        ``{"event": "end", "status", "exit_code", "error_message"}`` when the run has ended.
        Reconnects with ``Last-Event-ID`` when the server closes a long stream (or the
        connection drops), so it ends only with the run. ``after``: start after this offset.
        """
        import httpx

        path = "/v1/runs/" + quote(run_id, safe="") + "/output/stream"
        offset, failures = after, 0
        while True:
            headers = {"Last-Event-ID": str(offset)} if offset else {}
            try:
                with self._http.stream("GET", path, headers=headers, timeout=_timeout()) as reply:
                    if reply.status_code >= 400:
                        reply.read()
                        raise self._error_from(reply)
                    for event in parse_events(reply.iter_lines()):
                        failures = 0
                        if isinstance(event.get("id"), int):
                            offset = event["id"]
                        yield event
                        if event["event"] == "end":
                            return
            except (httpx.TransportError, UnavailableError) as exc:
                failures += 1
                if failures >= _RECONNECTS:
                    raise UnavailableError(f"the output stream of {run_id} failed: {exc}") from exc
                time.sleep(1.0)


def _timeout() -> httpx.Timeout:
    import httpx

    return httpx.Timeout(10.0, read=60.0)  # the server sends a keep-alive every 15 s
