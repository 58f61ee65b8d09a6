"""The shell executor's pipe reader closes its fd exactly once, on uvloop (the server's
loop) as on asyncio.

uvloop's ``connect_read_pipe``, used before, closed the read end twice: libuv's close,
then the file object's (the file object finds its fd already closed; uvloop issue #763).
A file another thread opened in between took the freed number and was closed under its
owner: in the crash test a job failed with ``OSError(9, 'Bad file descriptor')``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from chronoq.executors.shell import ShellExecutor, _Capture, _PipeReader

from .test_executors import request

Runner = Callable[[Coroutine[Any, Any, None]], None]
LOOPS = [pytest.param(asyncio.run, id="asyncio"), pytest.param(uvloop.run, id="uvloop")]


@pytest.mark.parametrize("runner", LOOPS)
def test_the_reader_reads_to_eof_and_closes_its_fd_once(runner: Runner, tmp_path: Path) -> None:
    found: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        capture = _Capture(1 << 20, loop)
        read_fd, write_fd = os.pipe()
        reader = _PipeReader(read_fd, capture, loop)
        os.write(write_fd, b"hello " * 10_000)  # more than one read
        os.close(write_fd)
        await asyncio.wait_for(capture.closed, 5)
        with pytest.raises(OSError):
            os.fstat(read_fd)  # closed at EOF
        # The freed number goes to the next open; nothing may close it behind our back.
        sentinel = os.open(tmp_path / "sentinel", os.O_CREAT | os.O_RDWR)
        reader.close()  # a second close (the executor's finally): a no-op
        for _ in range(20):
            await asyncio.sleep(0)
        found.update(text=capture.text(), sentinel=sentinel, reused=sentinel == read_fd)
        os.fstat(sentinel)
        os.close(sentinel)

    runner(main())
    assert found["text"] == "hello " * 10_000


@pytest.mark.parametrize("runner", LOOPS)
def test_jobs_on_either_loop_capture_their_output(runner: Runner) -> None:
    async def main() -> None:
        executor = ShellExecutor()
        results = await asyncio.gather(
            *(executor.execute(request(f"cmd:echo run-{i}")) for i in range(8))
        )
        assert [r.output.strip() for r in results] == [f"run-{i}" for i in range(8)]
        assert not [r.error for r in results if r.error]

    runner(main())
