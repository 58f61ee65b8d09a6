"""Issue 7.3: nothing a shell run started survives its timeout, its cancel or the worker's death.

Each test tags its processes with a unique token on their command line and then
looks through /proc for any process still carrying it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from chronoq.executors import ExecutionRequest, ShellExecutor
from chronoq.executors.cgroup import containment, find_cgroup2_mount

GRACE = 0.3
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
SRC = str(Path(__file__).resolve().parents[2] / "src")


def request(payload: str, timeout: float) -> ExecutionRequest:
    return ExecutionRequest(
        run_id="run-1",
        job_id="job-1",
        attempt=1,
        payload=payload,
        timeout_seconds=timeout,
        output_limit=65536,
        env=ENV,
    )


def carrying(token: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def sleeper(token: str) -> str:
    """A command whose cmdline carries ``token`` and that ignores SIGTERM for 300 s."""
    return f"sh -c 'trap \"\" TERM; sleep 300; : {token}'"


async def eventually(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)


async def settle(token: str, within: float = 3.0) -> list[int]:
    await eventually(lambda: not carrying(token), within)
    return carrying(token)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def assert_nothing_left(token: str) -> None:
    left = await settle(token)
    kill_all(left)  # never leave them behind, even when the test fails
    assert left == [], f"processes of the job still running: {left}"


@pytest.fixture
def shell() -> ShellExecutor:
    return ShellExecutor(kill_grace=GRACE, drain_grace=GRACE)


ESCAPES = {
    "setsid grandchild": "setsid {cmd} & sleep 0.2; echo ready; sleep 300",
    "setpgid child": (
        "python3 -c 'import os,sys; os.setpgid(0,0); "
        'os.execvp("sh", ["sh","-c",sys.argv[1]])\''
        ' "{inner}" & sleep 0.2; echo ready; sleep 300'
    ),
}


def escape_script(kind: str, token: str) -> str:
    cmd = sleeper(token)
    inner = f"trap '' TERM; sleep 300; : {token}"
    return "cmd:" + ESCAPES[kind].format(cmd=cmd, inner=inner)


@pytest.mark.parametrize("kind", sorted(ESCAPES))
async def test_escaped_children_die_at_timeout(shell: ShellExecutor, kind: str) -> None:
    token = f"cq-{uuid.uuid4().hex}"
    result = await shell.execute(request(escape_script(kind, token), timeout=1.0))
    assert result.timed_out
    assert "ready" in result.output
    await assert_nothing_left(token)


@pytest.mark.parametrize("kind", sorted(ESCAPES))
async def test_escaped_children_die_at_cancel(shell: ShellExecutor, kind: str) -> None:
    token = f"cq-{uuid.uuid4().hex}"
    task = asyncio.create_task(shell.execute(request(escape_script(kind, token), timeout=60)))
    await eventually(lambda: bool(carrying(token)), 5)
    await asyncio.sleep(0.3)
    assert carrying(token), "the escapee never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_nothing_left(token)


FORKER = (
    "import os, sys, time\n"
    "for _ in range(200):\n"
    "    if os.fork() == 0:\n"
    "        os.setsid()\n"
    "        time.sleep(300)\n"
    "        os._exit(0)\n"
    "print('forked', flush=True)\n"
    "time.sleep(300)\n"
)


async def test_two_hundred_forked_children_die_at_timeout(shell: ShellExecutor) -> None:
    """200 forked children, each in a session of its own: none survives the timeout."""
    token = f"cq-{uuid.uuid4().hex}"
    script = f'cmd:python3 -c "{FORKER}" {token}'
    result = await shell.execute(request(script, timeout=4.0))
    assert result.timed_out and "forked" in result.output
    await assert_nothing_left(token)


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {src!r})
    from chronoq.executors import ExecutionRequest, ShellExecutor
    from chronoq.executors.cgroup import Containment

    async def main():
        shell = ShellExecutor(kill_grace=0.3, drain_grace=0.3)
        if {fallback!r}:
            shell.containment = Containment(None)
        req = ExecutionRequest(run_id="r", job_id="j", attempt=1, payload={payload!r},
                               timeout_seconds=600, output_limit=4096, env={env!r})
        await shell.execute(req)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("mode", ["detected", "pdeathsig"])
async def test_worker_sigkill_takes_its_shell_children_with_it(mode: str) -> None:
    """SIGKILL of the worker: the shell and its children die (the guard, PDEATHSIG, cgroup).

    In the detected mode (cgroup as root) a ``setsid`` escapee dies too; in the
    pdeathsig fallback only the run's process group is reached, so none is started.
    """
    fallback = mode == "pdeathsig"
    if not fallback and containment().root is None:
        pytest.skip("cgroup mode needs root and a writable cgroup v2 hierarchy")
    token = f"cq-{uuid.uuid4().hex}"
    escapee = "" if fallback else f"setsid {sleeper(token)} & "
    payload = f"cmd:{sleeper(token)} & {escapee}sleep 300; : {token}"
    expected = 2 if fallback else 3
    code = WORKER.format(src=SRC, payload=payload, env=ENV, fallback=fallback)
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, start_new_session=True
    )
    try:
        started = await eventually(lambda: len(carrying(token)) >= expected, 10)
        assert started, "the job's processes never started"
        worker.kill()
        await worker.wait()
        await assert_nothing_left(token)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


def test_mode_is_cgroup_as_root_with_a_writable_cgroup2() -> None:
    if os.geteuid() != 0:
        pytest.skip("cgroup mode needs root; this run is not root (pdeathsig mode)")
    mount = find_cgroup2_mount()
    if mount is None or not os.access(mount, os.W_OK):
        pytest.skip("no writable cgroup v2 hierarchy on this machine (pdeathsig mode)")
    mode = containment()
    assert mode.mode == "cgroup"
    assert mode.root is not None and mount in mode.root.parents


async def test_run_cgroup_is_removed_after_the_run(shell: ShellExecutor) -> None:
    if shell.containment.root is None:
        pytest.skip("cgroup mode only (needs root and a writable cgroup v2 hierarchy)")
    await shell.execute(request("cmd:setsid sleep 300 & echo x", timeout=5))
    assert [p for p in shell.containment.root.iterdir() if p.is_dir()] == []
