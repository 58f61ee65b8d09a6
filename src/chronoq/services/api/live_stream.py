"""``GET /v1/runs/{run_id}/output/stream``: a run's output as server-sent events, live.

The worker publishes the newest output of a running run to the store about once a
second (``services.worker.live``); this handler polls the store every ``POLL_SECONDS``
and sends what is new since the reader's offset, so it works whichever process or host
runs the worker. Offsets are UTF-8 bytes of the cleaned output (``domain.live_output``).

Events (``data`` is JSON, so any text — ``\\r``, NUL marks — arrives exactly)::

    event: output  id: <offset after it>  data: {"start": <offset of text>, "text": "..."}
    event: end     id: <offset>           data: {"status", "exit_code", "error_message"}

``start`` greater than the reader's offset means the bytes in between are no longer kept
(the store keeps the newest 256 KiB of a running run). Once the run has ended the rest of
its final output is sent (from the reader's offset; the final output is the first
``--output-limit`` bytes) and then ``end``, and the stream closes; a run that had ended
already gets all of it at once. ``Last-Event-ID`` resumes after an offset. The comment
``: caught-up`` follows the output a running run had when the stream opened (for readers
that want only that: ``chronoq logs`` without ``--follow``).

Bounds: ``MAX_STREAMS_PER_USER`` streams per user and ``MAX_STREAMS`` per process at once
(more: ``429 too_many_streams``); a stream closes after ``STREAM_SECONDS`` without an
``end`` (the reader reconnects with ``Last-Event-ID``: authenticated again); a comment
line every ``KEEPALIVE_SECONDS`` keeps proxies from closing a quiet stream. A client that
goes away cancels the stream at its next wait; a stopping server (``StreamSlots.close``)
closes every stream at once, so open streams never hold up a graceful stop.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from chronoq.domain.live_output import RunLive, text_after
from chronoq.domain.states import RunStatus
from chronoq.errors import ChronoqError, NotFoundError, UnavailableError, ValidationError
from chronoq.services.api.deps import ApiDeps
from chronoq.services.api.http import TooManyStreams, job_id_of, user_of
from chronoq.services.api.outputs import offloaded_output

POLL_SECONDS = 0.5
STREAM_SECONDS = 600.0
KEEPALIVE_SECONDS = 15.0
MAX_STREAMS_PER_USER = 8
MAX_STREAMS = 256
EVENT_BYTES = 65_536
"""At most this many bytes of output per event (a finished run's output is sliced)."""
_FINAL_SLICE_CHARS = 65_536
CAUGHT_UP = b": caught-up\n\n"
"""A comment sent once, after the output a running run had when the stream opened."""
_ENCODER = msgspec.json.Encoder()
_WAITING = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})


class StreamSlots:
    """Open streams, per user and in all; one per api process (``app.state.streams``)."""

    def __init__(self, per_user: int = MAX_STREAMS_PER_USER, total: int = MAX_STREAMS) -> None:
        self._per_user = per_user
        self._total = total
        self._open: Counter[str] = Counter()
        self.closing = asyncio.Event()
        """Set when the server stops: every stream closes at once (no ``end``: readers
        reconnect, to another api process or to this one once it is back)."""

    def close(self) -> None:
        """The server is stopping: end every stream now, open no new one."""
        self.closing.set()

    def take(self, user: str) -> None:
        """Count a new stream of ``user``; ``TooManyStreams`` if over a bound."""
        if self.closing.is_set():
            raise UnavailableError("the server is stopping; reconnect in a moment")
        if self._open[user] >= self._per_user:
            raise TooManyStreams(f"at most {self._per_user} output streams per user at once", 5)
        if self._open.total() >= self._total:
            raise TooManyStreams(f"this server has {self._total} output streams open", 5)
        self._open[user] += 1

    def give_back(self, user: str) -> None:
        self._open[user] -= 1
        if self._open[user] <= 0:
            del self._open[user]


async def run_output_stream(request: Request) -> Response:
    deps: ApiDeps = request.app.state.deps
    slots: StreamSlots = request.app.state.streams
    user = user_of(request)
    run_id = job_id_of(request.path_params["run_id"], field="run_id")
    offset = _last_event_id(request.headers.get("last-event-id"))
    first = await deps.store.live_output(user, run_id, after=offset)
    if first is None:
        raise NotFoundError("run not found")
    slots.take(user)
    stream = _Stream(deps, user, first, offset, slots.closing)
    return _EventStream(stream.events(), lambda: slots.give_back(user))


class _EventStream(StreamingResponse):
    """The stream; its place is given back however the response ends (the end, its
    lifetime, the client's disconnect, an error) — even if the body never started."""

    def __init__(self, events: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _last_event_id(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:  # 15 digits: < 2**53
        raise ValidationError(
            "Last-Event-ID must be an offset this stream sent (a non-negative integer)",
            field="Last-Event-ID",
        )
    return int(raw)


def event(kind: str, data: object, event_id: int | None = None) -> bytes:
    """One server-sent event (``data`` as JSON on one line)."""
    head = f"event: {kind}\n" + ("" if event_id is None else f"id: {event_id}\n")
    return head.encode() + b"data: " + _ENCODER.encode(data) + b"\n\n"


class _Stream:
    def __init__(
        self, deps: ApiDeps, user: str, first: RunLive, offset: int, closing: asyncio.Event
    ) -> None:
        self._deps = deps
        self._closing = closing
        self._user = user
        self._view: RunLive | None = first
        self._offset = offset

    async def events(self) -> AsyncIterator[bytes]:
        clock = self._deps.clock
        yield b"retry: 1000\n\n"  # a reconnecting EventSource waits 1 s
        closes = clock.monotonic() + STREAM_SECONDS
        quiet_since = clock.monotonic()
        caught_up = False
        while self._view is not None and self._view.status in _WAITING:
            for chunk in self._live_part(self._view):
                quiet_since = clock.monotonic()
                yield chunk
            if not caught_up:  # a reader that wants only what exists now may stop here
                caught_up = True
                yield CAUGHT_UP
            if clock.monotonic() >= closes:
                return  # no end event: the reader comes back with Last-Event-ID
            if clock.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = clock.monotonic()
                yield b": keep-alive\n\n"
            if await clock.wait(self._closing, POLL_SECONDS):
                return  # the server is stopping: the reader reconnects with Last-Event-ID
            try:
                self._view = await self._deps.store.live_output(
                    self._user, self._view.run_id, after=self._offset
                )
            except UnavailableError:  # the store is down: the same view, polled again
                continue
        if self._view is None:  # deleted meanwhile (purge, retention)
            yield event("end", {"status": None, "exit_code": None, "error_message": "deleted"})
            return
        try:
            async for chunk in self._final_part(self._view):
                yield chunk
        except ChronoqError:  # its output is gone (retention) or unreadable now: end anyway
            pass
        view = self._view
        end = {"status": view.status.value, "exit_code": view.exit_code,
               "error_message": view.error_message}  # fmt: skip
        yield event("end", end, self._offset)

    def _live_part(self, view: RunLive) -> list[bytes]:
        if view.output is None:
            return []
        start, text = text_after(view.output.start, view.output.text, self._offset)
        if not text:
            return []
        return self._output_events(start, text.encode())

    def _output_events(self, start: int, data: bytes) -> list[bytes]:
        events = []
        while data:
            cut = min(len(data), EVENT_BYTES)
            while cut < len(data) and 0x80 <= data[cut] <= 0xBF:  # never split a character
                cut += 1
            text, data = data[:cut].decode(), data[cut:]
            self._offset = start + cut
            events.append(event("output", {"start": start, "text": text}, self._offset))
            start = self._offset
        return events

    async def _final_part(self, view: RunLive) -> AsyncIterator[bytes]:
        """What the reader has not seen of the run's final output (the first
        ``--output-limit`` bytes, as stored with the outcome)."""
        data = await self._final_output(view)
        if self._offset >= len(data):
            return
        start, text = text_after(0, data.decode(), self._offset)
        for chunk in self._output_events(start, text.encode()):
            yield chunk

    async def _final_output(self, view: RunLive) -> bytes:
        deps, user = self._deps, self._user
        offloaded = await offloaded_output(deps, user, view.job_id, view.run_id)
        if offloaded is not None:
            return offloaded
        pieces: list[str] = []
        start = 0
        while True:  # at most --output-limit bytes, a slice at a time
            piece = await deps.store.read_output(
                user, view.job_id, view.run_id, start, _FINAL_SLICE_CHARS
            )
            if not piece:
                break
            pieces.append(piece)
            start += len(piece)
            if len(piece) < _FINAL_SLICE_CHARS:
                break
        return "".join(pieces).encode()
