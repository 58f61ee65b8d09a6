"""Executors against real processes: echo, sleep, shell (group kill, cap, cancel), env, registry."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

import chronoq.executors as executors
from chronoq.executors import (
    EchoExecutor,
    ExecutionRequest,
    ExecutionResult,
    ExecutorRegistry,
    RefusedExecutor,
    ShellExecutor,
    SleepExecutor,
    default_registry,
    scrubbed_environment,
)

GRACE = 0.3  # kill grace used by the shell tests: short, so timeouts stay fast
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def request(
    payload: str,
    *,
    timeout: float = 5.0,
    limit: int = 1_048_576,
    env: Mapping[str, str] = BASE_ENV,
) -> ExecutionRequest:
    return ExecutionRequest(
        run_id="run-1",
        job_id="job-1",
        attempt=1,
        payload=payload,
        timeout_seconds=timeout,
        output_limit=limit,
        env=env,
    )


@pytest.fixture
def shell() -> ShellExecutor:
    return ShellExecutor(kill_grace=GRACE, drain_grace=GRACE)


def is_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs: reaped, or a zombie waiting for init to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.01)


def exists(path: str) -> bool:
    return Path(path).exists()


def read_pids(*files: Path) -> list[int]:
    return [int(f.read_text().strip()) for f in files]


# --- echo and sleep ---------------------------------------------------------


async def test_echo_returns_success_line() -> None:
    result = await EchoExecutor().execute(request("hello world"))
    assert result == ExecutionResult(succeeded=True, output="Success: hello world")


async def test_echo_delay_longer_than_timeout_times_out() -> None:
    started = time.monotonic()
    result = await EchoExecutor(delay=10).execute(request("x", timeout=0.05))
    assert result.timed_out and not result.succeeded
    assert result.error == "timed out after 0.05s"
    assert time.monotonic() - started < 2


async def test_sleep_sleeps_and_reports() -> None:
    started = time.monotonic()
    result = await SleepExecutor().execute(request("sleep:50ms"))
    assert time.monotonic() - started >= 0.045
    assert result == ExecutionResult(succeeded=True, output="Slept 50ms")


async def test_sleep_invalid_duration_is_a_failed_result() -> None:
    result = await SleepExecutor().execute(request("sleep:soon"))
    assert not result.succeeded and not result.timed_out
    assert result.error is not None and "invalid duration" in result.error


async def test_sleep_over_timeout_times_out_at_the_timeout() -> None:
    started = time.monotonic()
    result = await SleepExecutor().execute(request("sleep:1h", timeout=0.1))
    elapsed = time.monotonic() - started
    assert result.timed_out and not result.succeeded
    assert result.error == "timed out after 0.1s"
    assert 0.09 <= elapsed < 2


# --- shell --------------------------------------------------------------------


async def test_shell_success(shell: ShellExecutor) -> None:
    result = await shell.execute(request("cmd:echo hi"))
    assert result == ExecutionResult(succeeded=True, output="hi\n", exit_code=0)


async def test_shell_combines_stdout_and_stderr_and_reports_exit_status(
    shell: ShellExecutor,
) -> None:
    result = await shell.execute(request("cmd:echo out; echo err >&2; exit 3"))
    assert not result.succeeded and not result.timed_out
    assert result.output == "out\nerr\n"
    assert result.exit_code == 3
    assert result.error == "exit status 3"


async def test_shell_killed_by_signal_reports_it(shell: ShellExecutor) -> None:
    result = await shell.execute(request("cmd:kill -9 $$"))
    assert result.exit_code == -9 and result.error == "killed by SIGKILL"


async def test_shell_stdin_is_dev_null(shell: ShellExecutor) -> None:
    started = time.monotonic()
    result = await shell.execute(request("cmd:cat", timeout=10))
    assert result == ExecutionResult(succeeded=True, output="", exit_code=0)
    assert time.monotonic() - started < 5


async def test_shell_runs_in_a_fresh_directory_that_is_removed(shell: ShellExecutor) -> None:
    first = await shell.execute(request("cmd:pwd; touch leftover"))
    second = await shell.execute(request("cmd:pwd; ls"))
    dir1, dir2 = first.output.strip(), second.output.splitlines()[0]
    assert dir1 != dir2
    assert second.output.splitlines()[1:] == []  # nothing carried over
    assert not exists(dir1) and not exists(dir2)


async def test_shell_output_is_capped_with_a_mark(shell: ShellExecutor) -> None:
    result = await shell.execute(request("cmd:yes | head -c 5000000", limit=1000))
    assert result.succeeded and result.exit_code == 0
    kept, mark = result.output.split("\n...[", 1)
    assert kept == "y\n" * 500
    assert mark == "output truncated: 4999000 bytes omitted]"


async def test_shell_endless_output_still_stops_at_the_timeout(shell: ShellExecutor) -> None:
    started = time.monotonic()
    result = await shell.execute(request("cmd:yes", timeout=0.3, limit=100))
    elapsed = time.monotonic() - started
    assert result.timed_out and not result.succeeded
    assert result.error == "timed out after 0.3s"
    assert result.output.startswith("y\n" * 50 + "\n...[output truncated: ")
    assert elapsed < 0.3 + 2 * GRACE + 1.5


async def test_shell_timeout_kills_the_whole_group(shell: ShellExecutor, tmp_path: Path) -> None:
    main, child = tmp_path / "main.pid", tmp_path / "child.pid"
    script = f"cmd:echo $$ > {main}; sleep 300 & echo $! > {child}; echo started; sleep 300"
    started = time.monotonic()
    result = await shell.execute(request(script, timeout=0.3))
    assert time.monotonic() - started < 0.3 + 2 * GRACE + 1.5
    assert result.timed_out and not result.succeeded
    assert result.error == "timed out after 0.3s"
    assert result.output == "started\n"  # partial output is kept
    for pid in read_pids(main, child):
        await wait_until(functools.partial(is_gone, pid))


async def test_shell_timeout_kills_children_that_ignore_sigterm(
    shell: ShellExecutor, tmp_path: Path
) -> None:
    child = tmp_path / "child.pid"
    script = f"cmd:trap '' TERM; sleep 300 & echo $! > {child}; wait"
    result = await shell.execute(request(script, timeout=0.2))
    assert result.timed_out
    (pid,) = read_pids(child)
    await wait_until(lambda: is_gone(pid))


async def test_shell_background_child_holding_the_pipe_does_not_stall(
    shell: ShellExecutor, tmp_path: Path
) -> None:
    child = tmp_path / "child.pid"
    started = time.monotonic()
    result = await shell.execute(request(f"cmd:sleep 300 & echo $! > {child}; echo done"))
    assert time.monotonic() - started < 3
    assert result == ExecutionResult(succeeded=True, output="done\n", exit_code=0)
    (pid,) = read_pids(child)
    await wait_until(lambda: is_gone(pid))


async def test_cancelling_the_task_kills_the_group(shell: ShellExecutor, tmp_path: Path) -> None:
    main, child = tmp_path / "main.pid", tmp_path / "child.pid"
    script = f"cmd:echo $$ > {main}; sleep 300 & echo $! > {child}; sleep 300"
    task = asyncio.create_task(shell.execute(request(script, timeout=60)))
    await wait_until(lambda: child.exists() and child.read_text().strip() != "")
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < GRACE + 1.5
    for pid in read_pids(main, child):
        await wait_until(functools.partial(is_gone, pid))


async def test_missing_shell_is_a_failed_result() -> None:
    result = await ShellExecutor(shell="/nonexistent/sh").execute(request("cmd:true"))
    assert not result.succeeded
    assert result.error is not None and result.error.startswith("could not start")


# --- environment ----------------------------------------------------------------


def test_scrubbed_environment_drops_settings_and_credentials() -> None:
    environ = {
        **BASE_ENV,
        "HOME": "/home/job",
        "CHRONOQ_STORE": "postgresql://u:p@db/chronoq",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "AWS_REGION": "eu-west-1",
        "PGPASSWORD": "pg",
        "PGHOST": "db",
        "DATABASE_URL": "postgresql://db",
        "REDIS_URL": "redis://r",
        "github_token": "ghp",
        "MY_API_KEY": "k",
        "SSH_PRIVATE_KEY": "key",
        "APP_Secret": "s",
        "GOOGLE_APPLICATION_CREDENTIALS": "/creds.json",
        "DB_PASSWORD": "pw",
    }
    assert scrubbed_environment(environ) == {**BASE_ENV, "HOME": "/home/job"}
    assert "CHRONOQ_STORE" in environ  # the input is not mutated


async def test_shell_sees_only_the_scrubbed_environment(shell: ShellExecutor) -> None:
    environ = {**BASE_ENV, "CHRONOQ_STORE": "sqlite:///x", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    result = await shell.execute(request("cmd:env", env=scrubbed_environment(environ)))
    assert result.succeeded
    assert "PATH=" in result.output
    assert "CHRONOQ_STORE" not in result.output and "s3cr3t" not in result.output


# --- registry -------------------------------------------------------------------


class _Tagged:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        return ExecutionResult(succeeded=True, output=self.prefix)


def test_default_registry_resolves_the_seed_kinds() -> None:
    registry = default_registry(shell_enabled=True, echo_delay=0.5)
    assert isinstance(registry.resolve("cmd:echo hi"), ShellExecutor)
    assert isinstance(registry.resolve("sleep:2s"), SleepExecutor)
    for payload in ("hello", "", "cmd", "CMD:echo", " cmd:echo", "sleep 2s"):
        resolved = registry.resolve(payload)
        assert isinstance(resolved, EchoExecutor) and resolved.delay == 0.5


def test_registry_prefers_the_longest_prefix() -> None:
    registry = ExecutorRegistry(EchoExecutor())
    short, long = _Tagged("py:"), _Tagged("py:fast:")
    registry.register(long)
    registry.register(short)
    assert registry.resolve("py:fast:f") is long
    assert registry.resolve("py:slow:f") is short
    assert registry.prefixes == ("py:fast:", "py:")
    with pytest.raises(ValueError):
        registry.register(_Tagged(""))


async def test_refused_shell_fails_with_the_reason_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    registry = default_registry(shell_enabled=False)
    assert isinstance(registry.resolve("cmd:true"), RefusedExecutor)
    result = await registry.execute(request(f"cmd:touch {marker}"))
    assert result == ExecutionResult(
        succeeded=False, error="shell jobs (cmd:) are disabled on this server"
    )
    assert not marker.exists()


async def test_refuse_overrides_a_registered_executor() -> None:
    registry = ExecutorRegistry(EchoExecutor())
    registry.register(_Tagged("http:"))
    registry.refuse("http:", "webhooks are off")
    result = await registry.execute(request("http://example.com"))
    assert result == ExecutionResult(succeeded=False, error="webhooks are off")


def test_request_validates_its_limits() -> None:
    with pytest.raises(ValueError):
        request("x", timeout=0)
    with pytest.raises(ValueError):
        request("x", limit=-1)


def test_public_surface_is_pinned() -> None:
    assert sorted(executors.__all__) == sorted(
        [
            "SHELL_DISABLED_REASON",
            "EchoExecutor",
            "ExecutionRequest",
            "ExecutionResult",
            "Executor",
            "ExecutorRegistry",
            "RefusedExecutor",
            "ShellExecutor",
            "SleepExecutor",
            "default_registry",
            "scrubbed_environment",
        ]
    )


async def test_cancelling_twice_still_kills_the_group(shell: ShellExecutor, tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    script = f"cmd:trap '' TERM; sleep 300 & echo $! > {child}; wait"
    task = asyncio.create_task(shell.execute(request(script, timeout=60)))
    await wait_until(lambda: child.exists() and child.read_text().strip() != "")
    task.cancel()
    await asyncio.sleep(0)  # let the first cancellation reach the grace wait
    task.cancel()  # a second cancel interrupts the grace: the group is KILLed at once
    with pytest.raises(asyncio.CancelledError):
        await task
    (pid,) = read_pids(child)
    await wait_until(lambda: is_gone(pid))


def test_cgroup2_mount_is_found_in_mountinfo(tmp_path: Path) -> None:
    from chronoq.executors.cgroup import find_cgroup2_mount

    info = tmp_path / "mountinfo"
    info.write_text(
        "30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "41 31 0:38 / /srv/cg/v2 rw,relatime - cgroup2 cgroup2 rw\n"
    )
    assert find_cgroup2_mount(str(info)) == Path("/srv/cg/v2")
    info.write_text("30 24 0:26 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")
    assert find_cgroup2_mount(str(info)) is None


async def test_pdeathsig_mode_still_kills_the_group(tmp_path: Path) -> None:
    """The fallback (no writable cgroup): the timeout still kills the whole process group."""
    from chronoq.executors.cgroup import Containment

    shell = ShellExecutor(kill_grace=GRACE, drain_grace=GRACE)
    shell.containment = Containment(None)
    assert shell.containment.mode == "pdeathsig"
    main, child = tmp_path / "main.pid", tmp_path / "child.pid"
    script = f"cmd:echo $$ > {main}; sleep 300 & echo $! > {child}; sleep 300"
    try:
        result = await shell.execute(request(script, timeout=0.5))
    finally:
        shell.containment.close()
    assert result.timed_out
    for pid in read_pids(main, child):
        await wait_until(functools.partial(is_gone, pid))
