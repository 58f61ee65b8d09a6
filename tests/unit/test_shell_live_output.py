"""The shell executor feeds what a process writes to ``request.live`` while it runs (the
worker publishes it: issue 10.3): the first line is there before the process ends, bytes
are cleaned as final outputs are, and the tail keeps the newest bytes past the final
output's limit."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from chronoq.domain.live_output import LiveTail
from chronoq.domain.text import NUL_MARK
from chronoq.executors.shell import ShellExecutor
from tests.support.waiting import poll

from .test_executors import GRACE, request


async def test_the_first_line_is_seen_while_the_process_still_runs(tmp_path: Path) -> None:
    marker = tmp_path / "go"
    tail = LiveTail()
    script = f"cmd:echo first; while [ ! -e {marker} ]; do sleep 0.02; done; echo second"
    shell = ShellExecutor(kill_grace=GRACE, drain_grace=GRACE)
    running = asyncio.create_task(
        shell.execute(dataclasses.replace(request(script, timeout=20), live=tail))
    )
    assert await poll(lambda: _has(tail, "first\n"), 10), tail.snapshot()
    assert not running.done()
    marker.touch()
    result = await running
    assert result.succeeded and result.output == "first\nsecond\n"
    assert tail.snapshot() == (0, "first\nsecond\n")


async def test_bytes_are_cleaned_and_the_tail_goes_past_the_output_limit() -> None:
    tail = LiveTail(limit=64)
    script = "cmd:printf 'a\\000b\\377c'; head -c 10000 /dev/zero | tr '\\0' x; printf END"
    shell = ShellExecutor(kill_grace=GRACE, drain_grace=GRACE)
    result = await shell.execute(dataclasses.replace(request(script, limit=100), live=tail))
    assert result.output.startswith(f"a{NUL_MARK}b\ufffdc")
    assert "output truncated" in result.output  # the final output stops at its limit ...
    start, text = tail.snapshot()  # ... the live tail holds the newest bytes
    assert text.endswith("xEND") and len(text.encode()) <= 64
    assert start + len(text.encode()) == tail.end == len(f"a{NUL_MARK}b\ufffdc".encode()) + 10003


async def _has(tail: LiveTail, text: str) -> bool:
    return text in tail.snapshot()[1]
