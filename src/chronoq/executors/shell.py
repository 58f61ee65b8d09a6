"""``cmd:<script>``: runs ``sh -c <script>``, and makes sure nothing it started survives.

Shell jobs are remote code execution by design (DESIGN §8), so every run gets:

* its own session and process group (``start_new_session``), whose id is the
  shell's pid; every signal below goes to the whole group;
* stdin from ``/dev/null``; stdout and stderr combined into one pipe that is
  drained to the end, keeping the first ``output_limit`` bytes and counting the
  rest (the child never blocks on a full pipe), then a truncation mark;
* ``request.env`` (an allowlist the worker made, ``environment.py``) plus
  ``CHRONOQ_JOB_ID``, ``CHRONOQ_RUN_ID``, ``CHRONOQ_ATTEMPT`` and
  ``CHRONOQ_SCHEDULED_FOR`` as its environment;
* a fresh temporary working directory, removed afterwards;
* with ``run_as`` (``identity.py``, ``--shell-user``), another user: the child drops
  to it right before ``exec``; its working directory is its own and ``HOME``;
* output as text by ``decode_output``: invalid UTF-8 becomes U+FFFD and NUL ``␀``,
  so any bytes a job prints can be stored; while it runs, every byte also goes to
  ``request.live`` (``LiveTail``: the newest 256 KiB, cleaned the same way) if given.

The run starts (``request.begin()``, ``begins_itself``) once it holds a process
slot, right before anything is created: a run waiting for a slot has not started.

Lifecycle of one run::

    running --main exits--------------------------> KILL group -> drain -> result
       |
       +--timeout--> TERM group --main exited and pipe closed, or kill_grace--> KILL group
       |                                                     -> drain -> timed_out result
       +--task cancelled--> TERM group --(same)--> KILL group -> re-raise CancelledError

"drain" waits at most ``drain_grace`` for the pipe to close, then stops reading:
a process that left the group (``setsid``) and still holds the pipe cannot stall
the worker. Every KILL above also goes to the run's containment (``cgroup.py``):
as root with a writable cgroup v2 hierarchy each run has its own cgroup, entered
by the child before ``exec``, and ``cgroup.kill`` ends ``setsid`` escapees too;
otherwise only the process group is reached. In both modes the shell has
``PR_SET_PDEATHSIG(SIGKILL)`` and a guard process kills what is left when the
worker dies (see ``cgroup.py``). The main process is always awaited, even when the task is
cancelled again during cleanup (no zombie, no open transport); orphans killed in
the group are reaped by init (in a container, run an init such as tini).

Wall time of one run is at most ``timeout + kill_grace + drain_grace`` (a
cancellation that lands during the timeout's grace may add one more grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from asyncio.subprocess import DEVNULL, STDOUT, Process
from collections.abc import Callable

from chronoq.domain.live_output import LiveTail
from chronoq.domain.text import decode_output
from chronoq.executors.base import (
    NOT_STARTED,
    ExecutionRequest,
    ExecutionResult,
    timeout_message,
)
from chronoq.executors.cgroup import RunGroup, containment, set_pdeathsig
from chronoq.executors.identity import RunAs

__all__ = ["ShellExecutor"]


class ShellExecutor:
    """Runs ``cmd:`` payloads with ``shell -c``; see the module docstring for the contract.

    ``kill_grace``: seconds between SIGTERM and SIGKILL on timeout or cancellation.
    ``drain_grace``: seconds to wait for the output pipe to close once the group is killed.
    ``workdir_root``: where per-run directories are made (default: the system temp dir).
    ``run_as``: the user jobs run as (None: this process's user).
    """

    prefix = "cmd:"
    begins_itself = True

    def __init__(
        self,
        *,
        shell: str = "/bin/sh",
        kill_grace: float = 2.0,
        drain_grace: float = 1.0,
        workdir_root: str | None = None,
        max_processes: int = 256,
        run_as: RunAs | None = None,
    ) -> None:
        if kill_grace < 0 or drain_grace < 0:
            raise ValueError("kill_grace and drain_grace must be >= 0")
        if max_processes < 1:
            raise ValueError("max_processes must be >= 1")
        # At most this many shell jobs run at once; the others wait for a slot (their
        # timeout starts with the slot). Spawns go one at a time: fork+exec blocks the event
        # loop for milliseconds, and a burst of hundreds in one loop pass would starve the
        # worker's lease heartbeats until the leases expired.
        self._slots = asyncio.Semaphore(max_processes)
        self._spawning = asyncio.Lock()
        self.shell = shell
        self.kill_grace = kill_grace
        self.drain_grace = drain_grace
        self.workdir_root = workdir_root
        self.run_as = run_as
        self.containment = containment()  # decides and logs the mode once per process

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        """Run the script to exit, timeout or cancellation; clean up in every case."""
        script = request.payload.removeprefix(self.prefix)
        async with self._slots:
            if not await request.begin():
                return NOT_STARTED
            workdir = tempfile.mkdtemp(prefix="chronoq-run-", dir=self.workdir_root)
            if self.run_as is not None:  # 0700, now the job user's alone
                os.chown(workdir, self.run_as.uid, self.run_as.gid)
            try:
                return await self._run(script, request, workdir)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

    async def _run(self, script: str, request: ExecutionRequest, workdir: str) -> ExecutionResult:
        loop = asyncio.get_running_loop()
        capture = _Capture(request.output_limit, loop, request.live)
        read_fd, write_fd = os.pipe()
        try:
            pipe = _PipeReader(read_fd, capture, loop)  # owns read_fd from here on
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            raise
        run = None
        try:
            try:
                run = self.containment.new_run()
                proc = await _spawn_through_cancel(
                    asyncio.ensure_future(self._spawn(script, request, workdir, write_fd, run)),
                    run,
                )
            except OSError as exc:
                error = f"could not start {self.shell}: {exc}"
                return ExecutionResult(succeeded=False, error=error)
            finally:
                os.close(write_fd)  # the child holds its copy; EOF comes when the group is gone
            return await self._supervise(proc, capture, request.timeout_seconds, run)
        finally:
            pipe.close()
            if run is not None:
                # Off the event loop: removing a busy cgroup retries until it is empty. Shielded,
                # so the group is released even if this task is cancelled again meanwhile.
                await asyncio.shield(asyncio.to_thread(run.release))

    async def _spawn(
        self, script: str, request: ExecutionRequest, workdir: str, write_fd: int, run: RunGroup
    ) -> Process:
        env = request.run_environment()
        preexec = run.preexec
        if self.run_as is not None:
            env.update(HOME=workdir, USER=self.run_as.name, LOGNAME=self.run_as.name)
            preexec = _as_user(run, self.run_as)
        async with self._spawning:
            proc = await asyncio.create_subprocess_exec(
                self.shell,
                "-c",
                script,
                stdin=DEVNULL,
                stdout=write_fd,
                stderr=STDOUT,
                cwd=workdir,
                env=env,
                start_new_session=True,
                preexec_fn=preexec,
            )
            run.started(proc.pid)
            await asyncio.sleep(0)  # let timers (lease heartbeats) run between spawns
        return proc

    async def _supervise(
        self, proc: Process, capture: _Capture, limit: float, run: RunGroup
    ) -> ExecutionResult:
        """Wait ``limit`` seconds for the main process, then end the group; see the module doc."""
        group = proc.pid
        exited = asyncio.create_task(proc.wait())
        try:
            done, _ = await asyncio.wait((exited,), timeout=limit)
            timed_out = not done
            if timed_out:
                await self._terminate(group, exited, capture, run)
            run.kill()  # whatever the main process left behind
            await asyncio.wait((capture.closed,), timeout=self.drain_grace)
        except BaseException:  # cancelled (or a bug): nothing we started may survive
            await self._terminate(group, exited, capture, run)
            raise
        finally:
            run.kill()
            if not exited.done():  # only on a bug: cleanup always reaps
                exited.cancel()
        return _result(exited.result(), capture.text(), timed_out, limit)

    async def _terminate(
        self, group: int, exited: asyncio.Task[int], capture: _Capture, run: RunGroup
    ) -> None:
        """TERM the group; KILL it once the main process and the pipe are done or grace ends.

        A cancellation during the grace cuts the grace short, never the KILL or the reap.
        """
        _kill_group(group, signal.SIGTERM)
        try:
            await asyncio.wait((exited, capture.closed), timeout=self.kill_grace)
        finally:
            run.kill()
            await _reap(exited)


class _PipeReader:
    """Reads a pipe into ``protocol`` with ``add_reader``, and closes its fd exactly once.

    Not ``loop.connect_read_pipe``: under uvloop (the server's loop) that closes the fd
    twice — libuv's close, then the file object's — and when another thread or task got
    the same number in between, the second close hit that unrelated fd (a job's pipe,
    seen as ``OSError(9)`` failing a run in the crash test; it could as well be a store
    file or a socket). uvloop issue #763."""

    READ_SIZE = 256 * 1024

    def __init__(self, fd: int, protocol: _Capture, loop: asyncio.AbstractEventLoop) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._protocol = protocol
        self._loop = loop
        loop.add_reader(fd, self._ready)

    def _ready(self) -> None:
        try:
            data = os.read(self._fd, self.READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(exc)
            return
        if data:
            self._protocol.data_received(data)
        else:  # EOF: every writer (the job's whole process group) is gone
            self.close()

    def close(self, exc: Exception | None = None) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._protocol.connection_lost(exc)


class _Capture(asyncio.Protocol):
    """Keeps the first ``limit`` bytes read from a pipe, counts the rest, never pauses;
    feeds everything to ``live`` (the newest bytes, for watching the run) if given."""

    def __init__(
        self, limit: int, loop: asyncio.AbstractEventLoop, live: LiveTail | None = None
    ) -> None:
        self._limit = limit
        self._kept = bytearray()
        self._omitted = 0
        self._live = live
        self.closed: asyncio.Future[None] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        if self._live is not None:
            self._live.feed(data)
        room = self._limit - len(self._kept)
        if room >= len(data):
            self._kept += data
        else:
            if room > 0:
                self._kept += data[:room]
            self._omitted += len(data) - max(room, 0)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def text(self) -> str:
        """The kept output as clean text (``decode_output``), with a mark if any was dropped."""
        out = decode_output(bytes(self._kept))
        if self._omitted:
            out += f"\n...[output truncated: {self._omitted} bytes omitted]"
        return out


async def _spawn_through_cancel(spawning: asyncio.Future[Process], run: RunGroup) -> Process:
    """The spawned process, even if the caller is cancelled while it is being spawned.

    The fork happens before the spawn's last await, so a cancellation that lands
    in between would leave a running process group nobody supervises. Here the
    spawn always completes; if the caller was cancelled meanwhile, the new group
    is KILLed and its main process reaped before the cancellation goes on.
    """
    cancelled = False
    while not spawning.done():
        try:
            await asyncio.shield(spawning)
        except asyncio.CancelledError:
            cancelled = True
    if not cancelled:
        return spawning.result()  # raises OSError if the spawn failed
    if spawning.cancelled() or spawning.exception() is not None:
        raise asyncio.CancelledError
    proc = spawning.result()
    run.kill()
    await _reap(asyncio.ensure_future(proc.wait()))
    raise asyncio.CancelledError


async def _reap(exited: asyncio.Future[int]) -> None:
    """Await the main process (just SIGKILLed, so quickly) even through cancellation.

    A cancellation that arrives meanwhile is re-raised once the process is reaped, so
    the event loop is never left with a running child or an open transport.
    """
    cancelled = False
    while not exited.done():
        try:
            await asyncio.shield(exited)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _kill_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _result(returncode: int, output: str, timed_out: bool, timeout: float) -> ExecutionResult:
    if timed_out:
        error = timeout_message(timeout)
        return ExecutionResult(
            succeeded=False, output=output, exit_code=returncode, error=error, timed_out=True
        )
    if returncode == 0:
        return ExecutionResult(succeeded=True, output=output, exit_code=0)
    if returncode < 0:
        try:
            error = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            error = f"killed by signal {-returncode}"
    else:
        error = f"exit status {returncode}"
    return ExecutionResult(succeeded=False, output=output, exit_code=returncode, error=error)


def _as_user(run: RunGroup, user: RunAs) -> Callable[[], None]:
    """The child's last steps before exec: join the run's cgroup as root, become ``user``,
    then ask again to die with the worker (a change of credentials clears that)."""

    def preexec() -> None:
        run.preexec()
        user.drop_privileges()
        set_pdeathsig()

    return preexec
