"""The output of a running run, as it grows: a bounded window with byte offsets.

A running shell job's output is shown live (``GET /v1/runs/{id}/output/stream``). The
worker keeps the newest part of it (``LiveTail``), publishes it to the store about once
a second (``Dispatch.put_live_outputs``), and readers take what is new since the offset
they have seen (``text_after``). The store keeps only the newest ``LIVE_OUTPUT_BYTES``
of a run (``bounded``) and forgets it when the run leaves RUNNING: the final output is
then the run's ``output``, as before.

Offsets count UTF-8 bytes of the *cleaned* output text (``domain.text``: NUL shown as
``␀``, undecodable bytes as U+FFFD), from the start of the attempt. They always fall on
character boundaries, so a reader can resume from any offset it was given.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from chronoq.domain.states import RunStatus
from chronoq.domain.text import clean_text

LIVE_OUTPUT_BYTES = 262_144
"""The newest bytes of a running run's output that the worker and the store keep."""


def _is_continuation(byte: int) -> bool:
    return 0x80 <= byte <= 0xBF


def _snap(data: bytes | bytearray, cut: int) -> int:
    """``cut`` moved forward to the next UTF-8 character boundary of ``data``."""
    while cut < len(data) and _is_continuation(data[cut]):
        cut += 1
    return cut


def bounded(start: int, text: str, limit: int = LIVE_OUTPUT_BYTES) -> tuple[int, str]:
    """The window ``(start, text)`` cleaned and cut to its newest ``limit`` bytes (at most):
    ``start`` moves forward by what was dropped. Raises ``ValueError`` for a negative start."""
    if start < 0:
        raise ValueError(f"a live output starts at a byte offset >= 0, got {start}")
    text = clean_text(text)
    data = text.encode()
    if len(data) <= limit:
        return start, text
    cut = _snap(data, len(data) - limit)
    return start + cut, data[cut:].decode()


def text_after(start: int, text: str, offset: int) -> tuple[int, str]:
    """What a reader that has everything before ``offset`` gets from the window
    ``(start, text)``: ``(from, new_text)``, where ``from`` is ``offset`` — or ``start`` if
    the window no longer holds ``offset`` (the reader missed ``start - offset`` bytes) —
    snapped to a character boundary. Past the window's end: ``(end, "")``."""
    data = text.encode()
    at = max(offset, start) - start
    if at >= len(data):
        return start + len(data), ""
    at = _snap(data, at)
    return start + at, data[at:].decode()


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveOutput:
    """A worker's newest window of one running run's output (``Dispatch.put_live_outputs``)."""

    run_id: str
    attempt: int
    start: int
    """Byte offset of ``text``'s first byte in the attempt's whole (cleaned) output."""
    text: str

    def __post_init__(self) -> None:
        start, text = bounded(self.start, self.text)  # every store keeps the same window
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "text", text)

    @property
    def end(self) -> int:
        """Byte offset just past the window: how much output the attempt has made."""
        return self.start + len(self.text.encode())


@dataclass(frozen=True, slots=True, kw_only=True)
class RunLive:
    """A run as a live reader sees it (``JobStore.live_output``)."""

    run_id: str
    job_id: str
    attempt: int
    status: RunStatus
    exit_code: int | None
    error_message: str | None
    output: LiveOutput | None
    """The newest window while the run is RUNNING and its worker has published one."""

    @classmethod
    def of(
        cls,
        run_id: str,
        job_id: str,
        attempt: int,
        status: str,
        exit_code: int | None,
        error_message: str | None,
        start: int | None,
        text: str | None,
    ) -> RunLive:
        """From a SQL store's row: the run's columns, then its window's (None: none)."""
        output = None
        if text is not None and start is not None:
            output = LiveOutput(run_id=run_id, attempt=attempt, start=start, text=text)
        return cls(
            run_id=run_id,
            job_id=job_id,
            attempt=attempt,
            status=RunStatus(status),
            exit_code=exit_code,
            error_message=error_message,
            output=output,
        )


class LiveTail:
    """The worker's view of a running process's output: the newest ``limit`` bytes, cleaned.

    ``feed`` takes raw bytes as the process writes them (any bytes: a character split
    between two reads is decoded whole); memory stays under ``1.25 * limit`` (plus one
    read) whatever the process prints. ``snapshot`` is the window to publish; ``end``
    grows with every byte, so a publisher can tell whether there is anything new.
    """

    __slots__ = ("_decoder", "_end", "_kept", "_limit", "_slack")

    def __init__(self, limit: int = LIVE_OUTPUT_BYTES) -> None:
        self._limit = limit
        self._slack = max(limit // 4, 4096)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._kept = bytearray()
        self._end = 0

    @property
    def end(self) -> int:
        """Bytes of cleaned output made so far (the offset after the newest byte)."""
        return self._end

    def feed(self, data: bytes) -> None:
        """Add what the process wrote."""
        text = self._decoder.decode(data)
        if not text:
            return
        encoded = clean_text(text).encode()
        self._end += len(encoded)
        self._kept += encoded
        if len(self._kept) > self._limit + self._slack:  # trim in steps, not on every read
            del self._kept[: _snap(self._kept, len(self._kept) - self._limit)]

    @property
    def size(self) -> int:
        """Bytes ``snapshot`` would give (at most ``limit``)."""
        return min(len(self._kept), self._limit)

    def snapshot(self) -> tuple[int, str]:
        """``(start, text)``: the newest ``limit`` bytes (or fewer) and where they start."""
        cut = _snap(self._kept, max(len(self._kept) - self._limit, 0))
        return self._end - len(self._kept) + cut, self._kept[cut:].decode()
