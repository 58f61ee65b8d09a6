"""One attempt, start to outcome: load the payload, start, run the executor, decide the status.

Started before executing: a run executes only after ``Dispatch.mark_started``
recorded it (through the worker's ``gate``), right before the executor runs or,
for an executor that ``begins_itself`` (shell), right before it spawns. An
executor that finishes inline with no side effects (``execute_inline``, the echo
no-op) is never recorded as started: it has nothing to protect, and if its run
is lost before the outcome is recorded it is simply requeued and echoed again —
unless its start is the store's to judge (``ClaimedRun.start_check``: the job has an
overlap policy or a start deadline), which needs ``mark_started`` whatever executes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from chronoq.domain.clock import Clock
from chronoq.domain.jobs import BLOB_REF_PREFIX, ClaimedRun, RunOutcome
from chronoq.domain.live_output import LiveTail
from chronoq.domain.retry import RetryPolicy, attempts_left
from chronoq.domain.states import RunStatus, outcome_status
from chronoq.errors import UnavailableError
from chronoq.executors.base import ExecutionRequest, ExecutionResult, Executor, ExecutorRegistry
from chronoq.observability.metrics import Metrics
from chronoq.ports.blob import BlobStore
from chronoq.services.base import Backoff, log
from chronoq.services.worker.offload import OffloadFailures, offload_output

BLOB_BACKOFF = Backoff(first=0.2, cap=5.0)
"""Between downloads of a payload while the blob store is unavailable (``_load_payload``)."""

StartGate = Callable[[], Awaitable[datetime | None]]
"""Records the run as started; its start instant, or None: the run must not execute."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionContext:
    """What every attempt on this worker shares."""

    worker_id: str
    clock: Clock
    blob: BlobStore
    registry: ExecutorRegistry
    metrics: Metrics
    retry: RetryPolicy
    default_timeout: float
    output_limit: int
    env: Mapping[str, str]
    output_offload_bytes: int = 0
    """Outputs above this many UTF-8 bytes go to the blob store first (``offload``)."""
    offload_failures: OffloadFailures = dataclasses.field(default_factory=OffloadFailures)


async def execute(
    ctx: ExecutionContext, run: ClaimedRun, gate: StartGate, live: LiveTail | None = None
) -> RunOutcome | None:
    """Run one attempt; None if it did not start (``gate`` refused it: nothing ran).
    ``live``: where the executor feeds the output as it comes (``services.worker.live``).

    A payload that cannot be loaded fails the attempt without starting it. Never
    raises except ``CancelledError``.
    """
    try:
        payload = await _load_payload(ctx, run)
    except Exception as exc:
        result = ExecutionResult(succeeded=False, error=f"could not load the payload: {exc}")
        now = ctx.clock.now()
        return outcome_of(ctx, run, result, now, now)
    executor = ctx.registry.resolve(payload)
    started: datetime | None = None
    asked = False

    async def begin() -> bool:
        nonlocal started, asked
        asked = True
        started = await gate()
        if started is not None:
            observe_lag(ctx, run, started)
        return started is not None

    if getattr(executor, "begins_itself", False):
        request = _request(ctx, run, payload, begin, live)
    elif await begin():
        request = _request(ctx, run, payload, live=live)
    else:
        return None
    result = await _run_executor(executor, request)
    if asked and started is None:
        return None  # the executor asked to start and was refused: it did nothing
    finished = ctx.clock.now()
    began = started or finished  # an executor that never asked ran no side effects
    ctx.metrics.job_duration.observe((finished - began).total_seconds())
    outcome = outcome_of(ctx, run, result, began, finished)
    # Before the outcome is recorded: a run never references a missing object.
    return await offload_output(ctx.blob, outcome, ctx.output_offload_bytes, ctx.offload_failures)


def execute_inline(ctx: ExecutionContext, run: ClaimedRun, started: datetime) -> RunOutcome | None:
    """Run the attempt synchronously if its executor can finish without waiting, else None.

    Such a run is not recorded as started (see the module docstring), unless the store
    must judge its start (``ClaimedRun.start_check``: an overlap policy or a deadline).
    """
    if run.payload is None or run.start_check:
        return None  # offloaded: loading it waits on the blob store; or the store decides
    executor = ctx.registry.resolve(run.payload)
    inline = getattr(executor, "execute_inline", None)
    if inline is None:
        return None
    result = inline(_request(ctx, run, run.payload))
    if result is None:
        return None
    observe_lag(ctx, run, started)
    finished = ctx.clock.now()
    ctx.metrics.job_duration.observe((finished - started).total_seconds())
    return outcome_of(ctx, run, result, started, finished)


def observe_lag(ctx: ExecutionContext, run: ClaimedRun, started: datetime) -> None:
    if run.attempt != 1:
        return  # a retry's delay is its backoff, not lag
    lag = (started - run.scheduled_for).total_seconds()
    ctx.metrics.fire_lag.observe(max(lag, 0.0))


def outcome_of(
    ctx: ExecutionContext,
    run: ClaimedRun,
    result: ExecutionResult,
    started: datetime,
    finished: datetime,
) -> RunOutcome:
    """Turn an executor result into the outcome to record (retry decided here).

    Attempts lost to interruptions do not count against ``max_retries``.
    """
    status = outcome_status(
        succeeded=result.succeeded,
        timed_out=result.timed_out,
        attempts_left=attempts_left(run.attempt, run.max_retries, run.interruptions),
    )
    retry_at = None
    if status is RunStatus.RETRY_SCHEDULED:
        retry_at = finished + timedelta(seconds=ctx.retry.delay(run.attempt - run.interruptions))
    _count(ctx, status)
    return RunOutcome(
        run_id=run.run_id,
        worker_id=ctx.worker_id,
        attempt=run.attempt,
        status=status,
        started_at=started,
        completed_at=finished,
        output=result.output,
        exit_code=result.exit_code,
        error_message=result.error,
        retry_at=retry_at,
    )


def cancelled_outcome(ctx: ExecutionContext, run: ClaimedRun, started: datetime) -> RunOutcome:
    _count(ctx, RunStatus.CANCELLED)
    return RunOutcome(
        run_id=run.run_id,
        worker_id=ctx.worker_id,
        attempt=run.attempt,
        status=RunStatus.CANCELLED,
        started_at=started,
        completed_at=ctx.clock.now(),
        output="",
        exit_code=None,
        error_message="cancelled by the user",
    )


def _count(ctx: ExecutionContext, status: RunStatus) -> None:
    ctx.metrics.jobs_executed.labels(status.value).inc()


async def _load_payload(ctx: ExecutionContext, run: ClaimedRun) -> str:
    """The payload, fetched from the blob store if offloaded.

    While the blob store is unavailable the download is retried here, with capped
    exponential backoff (``BLOB_BACKOFF``), for as long as it takes: the run is held
    under its lease (heartbeats go on) and not started, so no attempt is used. A
    cancel or a lost lease ends it like any run; at shutdown it is handed back
    unstarted (QUEUED again, same attempt). Only a missing object (``NotFoundError``,
    which the put-before-insert order rules out) or a corrupt one fails the attempt.
    """
    if run.payload is not None:
        return run.payload
    if run.payload_ref is None:
        raise ValueError("the job has neither a payload nor a payload reference")
    key = run.payload_ref.removeprefix(BLOB_REF_PREFIX)
    failures = 0
    while True:
        try:
            data = await ctx.blob.get(key)
        except UnavailableError as exc:
            failures += 1
            if failures == 1 or failures % 20 == 0:
                log.warning("worker: payload of run %s unavailable (%d tries), retrying: %s",
                            run.run_id, failures, exc)  # fmt: skip
            await ctx.clock.sleep(BLOB_BACKOFF.delay(failures))
            continue
        return data.decode()


async def _run_executor(executor: Executor, request: ExecutionRequest) -> ExecutionResult:
    try:
        return await executor.execute(request)
    except Exception as exc:  # an executor bug must not kill the worker
        return ExecutionResult(succeeded=False, error=f"executor error: {exc!r}")


def _request(
    ctx: ExecutionContext,
    run: ClaimedRun,
    payload: str,
    begin: Callable[[], Awaitable[bool]] | None = None,
    live: LiveTail | None = None,
) -> ExecutionRequest:
    request = ExecutionRequest(
        run_id=run.run_id,
        job_id=run.job_id,
        attempt=run.attempt,
        payload=payload,
        timeout_seconds=run.timeout_seconds or ctx.default_timeout,
        output_limit=ctx.output_limit,
        env=ctx.env,
        scheduled_for=run.scheduled_for,
        live=live,
    )
    return request if begin is None else dataclasses.replace(request, begin=begin)
