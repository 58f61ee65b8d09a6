"""The executor interface: what a worker hands an executor and what it gets back.

A payload is a string; its prefix picks the executor (the seed's protocol):
``cmd:<script>`` runs a shell, ``sleep:<Go duration>`` sleeps, anything else is
echoed. The worker never looks inside a payload: it asks an ``ExecutorRegistry``
for the executor of the payload and awaits ``execute``.

Contract of every executor:

* ``execute`` never raises for a failure of the job itself (bad payload, non-zero
  exit, timeout): it returns an ``ExecutionResult`` with ``succeeded=False`` and a
  human-readable ``error``. It raises only ``asyncio.CancelledError`` (re-raised
  after cleaning up everything it started) and genuine bugs.
* It honours ``request.timeout_seconds``: a job that runs longer ends with
  ``timed_out=True`` shortly after the timeout (plus the executor's kill grace).
* Optionally, ``execute_inline(request)`` returns the result synchronously when the
  executor can finish without waiting (a no-op), or ``None``; the worker then skips
  creating a task for the run.
* ``output`` holds at most about ``request.output_limit`` bytes of the job's output
  (plus a truncation mark), as text made with ``chronoq.domain.text.decode_output``
  when it came from a process (NUL and invalid UTF-8 become visible marks).
* An executor that runs a process feeds every byte it reads to ``request.live`` (if
  set) as it reads it, so the output can be watched while the run runs.

Starting (``Dispatch.mark_started``): the worker records a run as started before it
executes, so a run lost before it started provably never ran. By default the worker
does it just before ``execute``. An executor that waits for something before its
first side effect (the shell executor waits for a process slot) sets the class
attribute ``begins_itself = True`` and awaits ``request.begin()`` right before that
side effect (before spawning): True means go on; False means the run must not start
(it is no longer this worker's, or the worker is stopping) and ``execute`` returns at
once, having done nothing; its result is then discarded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from chronoq.domain.clock import format_rfc3339
from chronoq.domain.live_output import LiveTail

__all__ = [
    "NOT_STARTED",
    "ExecutionRequest",
    "ExecutionResult",
    "Executor",
    "ExecutorRegistry",
    "RefusedExecutor",
    "timeout_message",
]


async def _begin_now() -> bool:
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionRequest:
    """One attempt of one run, as the worker hands it to an executor.

    ``payload`` is the full payload string, prefix included (``"cmd:echo hi"``).
    ``env`` is the complete environment of any child process, already scrubbed
    (see ``scrubbed_environment``); an empty mapping means an empty environment.
    Raises ``ValueError`` if ``timeout_seconds <= 0`` or ``output_limit < 0``.
    """

    run_id: str
    job_id: str
    attempt: int
    payload: str
    timeout_seconds: float
    output_limit: int = 1_048_576
    env: Mapping[str, str] = field(default_factory=dict)
    scheduled_for: datetime | None = None
    """The fire's due time (given to shell jobs as ``CHRONOQ_SCHEDULED_FOR``, RFC 3339)."""
    begin: Callable[[], Awaitable[bool]] = field(default=_begin_now, compare=False, repr=False)
    """For executors with ``begins_itself``: await right before the first side effect;
    False means do nothing and return (see the module docstring). Default: always True."""
    live: LiveTail | None = field(default=None, compare=False, repr=False)
    """Where an executor that runs a process feeds its output as it comes (the worker
    publishes it while the run runs: ``services.worker.live``). None: nobody watches."""

    def run_environment(self) -> dict[str, str]:
        """``env`` plus what a job may want to know about its own run."""
        return {
            **self.env,
            "CHRONOQ_JOB_ID": self.job_id,
            "CHRONOQ_RUN_ID": self.run_id,
            "CHRONOQ_ATTEMPT": str(self.attempt),
            "CHRONOQ_SCHEDULED_FOR": (
                "" if self.scheduled_for is None else format_rfc3339(self.scheduled_for)
            ),
        }

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be > 0, got {self.timeout_seconds!r}")
        if self.output_limit < 0:
            raise ValueError(f"output_limit must be >= 0, got {self.output_limit!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionResult:
    """The outcome of one execution.

    ``exit_code`` is set only by executors that run a process: the process's exit
    status, or ``-N`` when it was killed by signal ``N``. ``error`` is set whenever
    ``succeeded`` is false. ``timed_out`` implies ``not succeeded``.
    """

    succeeded: bool
    output: str = ""
    exit_code: int | None = None
    error: str | None = None
    timed_out: bool = False


NOT_STARTED = ExecutionResult(succeeded=False, error="not started: the worker may not run it now")
"""What an executor returns when ``request.begin()`` said no (the worker discards it)."""


def timeout_message(seconds: float) -> str:
    """The ``error`` of a timed-out result, the same for every executor."""
    return f"timed out after {seconds:g}s"


class Executor(Protocol):
    """Runs payloads that start with ``prefix`` (``""`` for the default executor)."""

    prefix: str

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        """Run ``request`` to completion, timeout or cancellation (see module contract)."""
        ...


class RefusedExecutor:
    """Fails every payload with its prefix, without running anything.

    Used for kinds switched off by the operator (``cmd:`` on a public server): a
    refused payload must fail loudly, never fall through to the echo executor.
    """

    def __init__(self, prefix: str, reason: str) -> None:
        self.prefix = prefix
        self.reason = reason

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        """Return a failed result carrying ``reason``."""
        return ExecutionResult(succeeded=False, error=self.reason)


class ExecutorRegistry:
    """Maps payloads to executors by the longest matching prefix.

    Prefixes are case-sensitive and matched at the very start of the payload, as
    the seed did. Payloads matching no registered prefix go to ``default``.
    Registering a prefix again replaces the previous executor (or refusal).
    """

    __slots__ = ("_by_prefix", "_default", "_ordered")

    def __init__(self, default: Executor) -> None:
        self._default = default
        self._by_prefix: dict[str, Executor] = {}
        self._ordered: tuple[tuple[str, Executor], ...] = ()

    @property
    def default(self) -> Executor:
        """The executor of payloads without a registered prefix."""
        return self._default

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Registered prefixes (refused ones included), longest first."""
        return tuple(prefix for prefix, _ in self._ordered)

    def register(self, executor: Executor) -> None:
        """Route payloads starting with ``executor.prefix`` to ``executor``.

        Raises ``ValueError`` for an empty prefix: the default is fixed at construction.
        """
        if not executor.prefix:
            raise ValueError("an executor needs a non-empty prefix; pass the default at init")
        self._by_prefix[executor.prefix] = executor
        self._ordered = tuple(
            sorted(self._by_prefix.items(), key=lambda item: len(item[0]), reverse=True)
        )

    def refuse(self, prefix: str, reason: str) -> None:
        """Make payloads starting with ``prefix`` fail with ``reason`` and run nothing."""
        self.register(RefusedExecutor(prefix, reason))

    def resolve(self, payload: str) -> Executor:
        """Return the executor of the longest registered prefix of ``payload``, else default."""
        for prefix, executor in self._ordered:
            if payload.startswith(prefix):
                return executor
        return self._default

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        """Shorthand for ``resolve(request.payload).execute(request)``."""
        return await self.resolve(request.payload).execute(request)
