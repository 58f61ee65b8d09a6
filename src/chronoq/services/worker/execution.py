"""One attempt, start to outcome: load the payload, run the executor, decide the status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from chronoq.domain.clock import Clock
from chronoq.domain.jobs import BLOB_REF_PREFIX, ClaimedRun, RunOutcome
from chronoq.domain.retry import RetryPolicy, attempts_left
from chronoq.domain.states import RunStatus, outcome_status
from chronoq.executors.base import ExecutionRequest, ExecutionResult, ExecutorRegistry
from chronoq.observability.metrics import Metrics
from chronoq.ports.blob import BlobStore


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


async def execute(ctx: ExecutionContext, run: ClaimedRun, started: datetime) -> RunOutcome:
    """Run one attempt; never raises except ``CancelledError``."""
    try:
        payload = await _load_payload(ctx, run)
    except Exception as exc:
        result = ExecutionResult(succeeded=False, error=f"could not load the payload: {exc}")
    else:
        result = await _run_executor(ctx, run, payload)
    finished = ctx.clock.now()
    ctx.metrics.job_duration.observe((finished - started).total_seconds())
    return outcome_of(ctx, run, result, started, finished)


def execute_inline(ctx: ExecutionContext, run: ClaimedRun, started: datetime) -> RunOutcome | None:
    """Run the attempt synchronously if its executor can finish without waiting, else None."""
    if run.payload is None:
        return None  # offloaded: loading it waits on the blob store
    executor = ctx.registry.resolve(run.payload)
    inline = getattr(executor, "execute_inline", None)
    if inline is None:
        return None
    result = inline(_request(ctx, run, run.payload))
    if result is None:
        return None
    finished = ctx.clock.now()
    ctx.metrics.job_duration.observe((finished - started).total_seconds())
    return outcome_of(ctx, run, result, started, finished)


def outcome_of(
    ctx: ExecutionContext,
    run: ClaimedRun,
    result: ExecutionResult,
    started: datetime,
    finished: datetime,
) -> RunOutcome:
    """Turn an executor result into the outcome to record (retry decided here)."""
    status = outcome_status(
        succeeded=result.succeeded,
        timed_out=result.timed_out,
        attempts_left=attempts_left(run.attempt, run.max_retries),
    )
    retry_at = None
    if status is RunStatus.RETRY_SCHEDULED:
        retry_at = finished + timedelta(seconds=ctx.retry.delay(run.attempt))
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
    if run.payload is not None:
        return run.payload
    if run.payload_ref is None:
        raise ValueError("the job has neither a payload nor a payload reference")
    data = await ctx.blob.get(run.payload_ref.removeprefix(BLOB_REF_PREFIX))
    ctx.metrics.s3_operations.labels("download").inc()
    return data.decode()


async def _run_executor(ctx: ExecutionContext, run: ClaimedRun, payload: str) -> ExecutionResult:
    executor = ctx.registry.resolve(payload)
    try:
        return await executor.execute(_request(ctx, run, payload))
    except Exception as exc:  # an executor bug must not kill the worker
        return ExecutionResult(succeeded=False, error=f"executor error: {exc!r}")


def _request(ctx: ExecutionContext, run: ClaimedRun, payload: str) -> ExecutionRequest:
    return ExecutionRequest(
        run_id=run.run_id,
        job_id=run.job_id,
        attempt=run.attempt,
        payload=payload,
        timeout_seconds=run.timeout_seconds or ctx.default_timeout,
        output_limit=ctx.output_limit,
        env=ctx.env,
        scheduled_for=run.scheduled_for,
    )
