"""The output stream's generator (``services/api/live_stream.py``) on the fake clock with the
memory store: what a reader gets after its offset, a gap when the window moved past it, a
keep-alive when quiet, the end of a stream after its lifetime (no ``end`` event: the reader
reconnects), and the per-user and per-process bounds."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from chronoq.adapters.memory import MemoryStore
from chronoq.domain.live_output import LiveOutput
from chronoq.domain.states import RunStatus
from chronoq.errors import UnavailableError
from chronoq.services.api.http import TooManyStreams
from chronoq.services.api.live_stream import (
    KEEPALIVE_SECONDS,
    STREAM_SECONDS,
    StreamSlots,
    _Stream,
)
from chronoq.testing import FakeClock
from tests.contract.helpers import make_job, outcome, submit_and_lease


async def _running(store: MemoryStore) -> str:
    claimed = await submit_and_lease(store, make_job(payload="cmd:yes"), "w1", started=True)
    return claimed.run_id


def _parse(chunks: list[bytes]) -> list[tuple[str, Any]]:
    """(kind, data) per event; comments as ("comment", text)."""
    found: list[tuple[str, Any]] = []
    for block in b"".join(chunks).decode().split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            found.append(("comment", block[1:].strip()))
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


async def _collect(stream: _Stream, clock: FakeClock, within: float) -> list[bytes]:
    chunks: list[bytes] = []

    async def read() -> None:
        async for chunk in stream.events():
            chunks.append(chunk)

    task = asyncio.create_task(read())
    await clock.run_until(task.done, within=within, step=0.5)
    await task
    return chunks


async def _stream(store: MemoryStore, clock: FakeClock, run_id: str, offset: int) -> _Stream:
    first = await store.live_output("alice", run_id)
    assert first is not None
    deps: Any = SimpleNamespace(store=store, clock=clock, ingest=SimpleNamespace(blob=None))
    return _Stream(deps, "alice", first, offset, asyncio.Event())


async def test_a_quiet_running_run_gets_keepalives_then_the_stream_closes_without_end() -> None:
    store, clock = MemoryStore(), FakeClock()
    await store.start()
    run_id = await _running(store)
    assert await store.put_live_outputs("w1", [LiveOutput(run_id=run_id, attempt=1, start=0,
                                                          text="hi\n")])  # fmt: skip
    events = _parse(
        await _collect(await _stream(store, clock, run_id, 0), clock, STREAM_SECONDS + 5)
    )
    kinds = [kind for kind, _ in events]
    assert events[0] == ("output", {"start": 0, "text": "hi\n"})
    assert ("comment", "caught-up") in events
    assert "end" not in kinds
    keepalives = kinds.count("comment") - 1
    assert (
        STREAM_SECONDS // KEEPALIVE_SECONDS - 2 <= keepalives <= STREAM_SECONDS // KEEPALIVE_SECONDS
    )


async def test_a_window_past_the_readers_offset_shows_as_a_gap_then_the_end() -> None:
    store, clock = MemoryStore(), FakeClock()
    await store.start()
    claimed = await submit_and_lease(store, make_job(payload="cmd:x"), "w1", started=True)
    window = LiveOutput(run_id=claimed.run_id, attempt=1, start=1000, text="newest\n")
    assert await store.put_live_outputs("w1", [window])
    stream = await _stream(store, clock, claimed.run_id, 10)
    chunks: list[bytes] = []

    async def read() -> None:
        async for chunk in stream.events():
            chunks.append(chunk)

    reading = asyncio.create_task(read())
    await clock.advance(1.0)
    failed = outcome(claimed, RunStatus.FAILED, output="x", exit_code=2, error_message="boom")
    assert await store.complete_runs([failed]) == [True]
    await clock.run_until(reading.done, within=5, step=0.5)
    events = _parse(chunks)
    assert events[0] == ("output", {"start": 1000, "text": "newest\n"})
    assert events[-1] == ("end", {"status": "FAILED", "exit_code": 2, "error_message": "boom"})
    # The final output ("x") is shorter than what the reader has: nothing more is sent.
    assert [k for k, _ in events].count("output") == 1


def test_streams_are_bounded_per_user_and_per_process() -> None:
    slots = StreamSlots(per_user=2, total=3)
    slots.take("a")
    slots.take("a")
    with pytest.raises(TooManyStreams):
        slots.take("a")
    slots.take("b")
    with pytest.raises(TooManyStreams):
        slots.take("c")
    slots.give_back("a")
    slots.take("c")  # a stream that ended frees its place
    slots.close()  # the server is stopping
    slots.give_back("c")
    with pytest.raises(UnavailableError):
        slots.take("c")
