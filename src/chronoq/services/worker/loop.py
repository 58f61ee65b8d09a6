"""The worker loop: claim with a lease, start on time, heartbeat, hand back at stop.

Runs claimed before their ``available_at`` (the look-ahead) wait on a timer
and start at their exact time, never early. Every held run's lease is
extended every ``lease/3``; a run whose lease was lost is abandoned (someone
else may own it now). Cancel hints kill the run's executor (and so its
process group). At ``stop``: nothing new is claimed, running attempts get
``shutdown_grace`` to finish, the rest are killed and handed back unstarted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chronoq import failpoints
from chronoq.domain.clock import Clock
from chronoq.domain.jobs import ClaimedRun
from chronoq.domain.retry import RetryPolicy
from chronoq.executors.base import ExecutorRegistry
from chronoq.observability.metrics import Metrics
from chronoq.ports.blob import BlobStore
from chronoq.ports.notify import CANCEL, RUNS, Notifier
from chronoq.ports.store import ClaimRunsParams, Store
from chronoq.services.base import Wakeup, cancel_and_wait, log, spawn
from chronoq.services.worker.completer import Completer
from chronoq.services.worker.execution import (
    ExecutionContext,
    cancelled_outcome,
    execute,
    execute_inline,
)

_IDLE_RECHECK = 5.0
_ERROR_BACKOFF = 0.5
_MAX_CLAIM = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    worker_id: str
    concurrency: int = 4096
    lease_seconds: float = 30.0
    lookahead: float = 0.5
    default_timeout: float = 3600.0
    output_limit: int = 1_048_576
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    shutdown_grace: float = 10.0
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Held:
    run: ClaimedRun
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # "cancelled" | "shutdown" | "lease_lost"


class Worker:
    name = "worker"

    def __init__(
        self,
        store: Store,
        blob: BlobStore,
        notifier: Notifier,
        clock: Clock,
        metrics: Metrics,
        registry: ExecutorRegistry,
        config: WorkerConfig,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._config = config
        self._ctx = ExecutionContext(
            worker_id=config.worker_id,
            clock=clock,
            blob=blob,
            registry=registry,
            metrics=metrics,
            retry=config.retry,
            default_timeout=config.default_timeout,
            output_limit=config.output_limit,
            env=config.env,
        )
        self._completer = Completer(store, notifier)
        self._held: dict[str, _Held] = {}
        self._due: dict[datetime, list[_Held]] = {}
        """Runs claimed ahead of time, by start instant: one timer per instant, not per run."""
        self._wakeup = Wakeup()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def worker_id(self) -> str:
        return self._config.worker_id

    async def start(self) -> None:
        self._notifier.subscribe(RUNS, self._wakeup.set)
        self._notifier.subscribe(CANCEL, self._on_cancel)
        self._tasks = [
            spawn(self._completer.run(), "worker-completer"),
            spawn(self._claim_loop(), "worker-claim"),
            spawn(self._heartbeat_loop(), "worker-heartbeat"),
        ]

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        completer, claim, heartbeat = self._tasks or (None, None, None)
        await cancel_and_wait(claim)
        unstarted = self._drop_timers()
        leftover = await self._drain_running()
        await self._completer.flush()
        await cancel_and_wait(heartbeat)
        await cancel_and_wait(completer)
        handback = unstarted + leftover
        if handback:
            try:
                await self._store.release_runs(self.worker_id, handback)
            except Exception:
                log.exception("worker: handing back %d runs failed", len(handback))
            else:
                log.info("worker: handed back %d unfinished runs", len(handback))

    # -- claiming ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            try:
                delay = await self._claim()
            except Exception:
                log.exception("worker: claiming runs failed; retrying")
                delay = _ERROR_BACKOFF
            await self._wakeup.wait(delay)

    async def _claim(self) -> float:
        free = self._config.concurrency - len(self._held)
        if free <= 0:
            return _IDLE_RECHECK  # a finishing run wakes us
        now = self._clock.now()
        limit = min(free, _MAX_CLAIM)
        claimed = await self._store.claim_runs(
            ClaimRunsParams(
                worker_id=self.worker_id,
                now=now,
                horizon=now + timedelta(seconds=self._config.lookahead),
                lease_until=now + timedelta(seconds=self._config.lease_seconds),
                limit=limit,
            )
        )
        if claimed:
            failpoints.hit("after_dispatch")
        for run in claimed:
            self._hold(run)
        if len(claimed) == limit:
            return 0.0
        following = await self._store.next_available_at()
        if following is None:
            return _IDLE_RECHECK
        wait = (following - self._clock.now()).total_seconds() - self._config.lookahead
        return min(max(wait, 0.001), _IDLE_RECHECK)

    def _hold(self, run: ClaimedRun) -> None:
        held = _Held(run)
        self._held[run.run_id] = held
        delay = (run.available_at - self._clock.now()).total_seconds()
        if delay <= 0:
            self._start(held)
            return
        bucket = self._due.get(run.available_at)
        if bucket is None:
            bucket = self._due[run.available_at] = []
            asyncio.get_running_loop().call_later(delay, self._start_due, run.available_at)
        bucket.append(held)

    def _start_due(self, at: datetime) -> None:
        """Start every run due at ``at`` — all in this one callback, never a hair early."""
        early = (at - self._clock.now()).total_seconds()
        if early > 0:
            asyncio.get_running_loop().call_later(early, self._start_due, at)
            return
        for held in self._due.pop(at, ()):
            if held.stop_reason is None:
                self._start(held)

    def _start(self, held: _Held) -> None:
        run = held.run
        started = self._clock.now()
        outcome = execute_inline(self._ctx, run, started)
        if outcome is not None:  # a no-op finished on the spot: no task needed
            self._observe_lag(started, run)
            self._release_slot(run.run_id)
            self._completer.report(outcome)
            return
        held.task = asyncio.create_task(self._execute(held), name=f"run-{run.run_id}")

    def _observe_lag(self, started: datetime, run: ClaimedRun) -> None:
        if run.attempt != 1:
            return  # a retry's delay is its backoff, not lag
        lag = (started - run.scheduled_for).total_seconds()
        self._ctx.metrics.fire_lag.observe(max(lag, 0.0))

    # -- executing -----------------------------------------------------------------------

    async def _execute(self, held: _Held) -> None:
        run = held.run
        started = self._clock.now()
        self._observe_lag(started, run)
        try:
            outcome = await execute(self._ctx, run, started)
        except asyncio.CancelledError:
            if held.stop_reason != "cancelled":
                raise  # shutdown (handed back) or lease lost (someone else owns it)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            outcome = cancelled_outcome(self._ctx, run, started)
        finally:
            if held.stop_reason is None or held.stop_reason == "cancelled":
                self._release_slot(run.run_id)
        self._completer.report(outcome)

    def _release_slot(self, run_id: str) -> None:
        was_full = len(self._held) >= self._config.concurrency
        self._held.pop(run_id, None)
        if was_full and not self._stopping:
            self._wakeup.set()

    def _on_cancel(self, run_id: str) -> None:
        held = self._held.get(run_id)
        if held is None or held.stop_reason is not None:
            return
        held.stop_reason = "cancelled"
        if held.task is not None:
            held.task.cancel()
            return
        self._release_slot(run_id)  # not started yet: its bucket skips it
        self._completer.report(cancelled_outcome(self._ctx, held.run, self._clock.now()))

    # -- leases --------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self._config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._heartbeat()
            except Exception:
                log.exception("worker: extending leases failed")

    async def _heartbeat(self) -> None:
        ids = [rid for rid, h in self._held.items() if h.stop_reason is None]
        if not ids:
            return
        failpoints.hit("at_lease_renewal")
        until = self._clock.now() + timedelta(seconds=self._config.lease_seconds)
        kept = set(await self._store.extend_leases(self.worker_id, ids, until))
        for run_id in ids:
            held = self._held.get(run_id)
            if run_id in kept or held is None or held.stop_reason is not None:
                continue
            log.warning("worker: lost the lease of run %s; abandoning it", run_id)
            self._abandon(held, "lease_lost")
            self._held.pop(run_id, None)

    def _abandon(self, held: _Held, reason: str) -> None:
        held.stop_reason = reason
        if held.task is not None:
            held.task.cancel()

    # -- stopping ------------------------------------------------------------------------

    def _drop_timers(self) -> list[str]:
        unstarted = [rid for rid, h in self._held.items() if h.task is None]
        for run_id in unstarted:
            self._abandon(self._held.pop(run_id), "shutdown")
        self._due.clear()
        return unstarted

    async def _drain_running(self) -> list[str]:
        tasks = {h.task: rid for rid, h in self._held.items() if h.task is not None}
        if not tasks:
            return []
        log.info("worker: waiting up to %.0fs for %d runs", self._config.shutdown_grace, len(tasks))
        _done, pending = await asyncio.wait(tasks, timeout=self._config.shutdown_grace)
        leftover = [tasks[t] for t in pending]
        for task in pending:
            self._abandon(self._held[tasks[task]], "shutdown")
        await asyncio.gather(*pending, return_exceptions=True)
        for run_id in leftover:
            self._held.pop(run_id, None)
        return leftover
