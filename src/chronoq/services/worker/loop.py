"""The worker role: claim with a lease, start on time, heartbeat, hand back at stop.

Three ``Loop``s (``services.base``) and a batcher, every wait on the ``Clock``:

* **claim**: leases QUEUED runs up to ``lookahead`` ahead (woken by RUNS hints).
  A run claimed before its ``available_at`` waits on a timer and starts at that
  exact instant, never early; all runs due at one instant start in one callback.
* **start** (``StartBatcher``): a run executes only after ``Dispatch.mark_started``
  recorded it; runs starting together are recorded by one call. Inline no-ops
  (echo) are never recorded as started (``execution``).
* **heartbeat**: every ``lease/3``, ``extend_leases`` renews every held run.
  A run no longer held is abandoned (someone else may own it now); a run in
  ``LeaseRenewal.cancel`` is killed exactly as a CANCEL hint kills it — so a
  cancel reaches a running job within one heartbeat even if every hint is lost.
* **completer**: records outcomes in batches; untrusted output never blocks it.
* **live output** (``LivePublisher``): once a second, the newest output of each running
  run that printed something since, for readers on any api process.

At ``stop``: nothing new is claimed or started; running attempts get
``shutdown_grace`` to finish, the rest are killed; everything unfinished is handed
back with ``release_runs`` (the store applies ``lost_run``: unstarted runs are
requeued, started ones become INTERRUPTED within ``max_interruptions``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chronoq import failpoints
from chronoq.domain.clock import Clock
from chronoq.domain.jobs import ClaimedRun, RunOutcome
from chronoq.domain.live_output import LiveTail
from chronoq.domain.queues import NO_LIMITS, ClaimLimits
from chronoq.domain.retry import DEFAULT_MAX_INTERRUPTIONS, RetryPolicy
from chronoq.executors.base import ExecutorRegistry
from chronoq.observability.metrics import Metrics
from chronoq.ports.blob import BlobStore
from chronoq.ports.dispatch import ClaimRunsParams, Dispatch, ReleaseParams
from chronoq.ports.notify import CANCEL, RUNS, Notifier
from chronoq.services.base import Loop, log
from chronoq.services.worker.completer import Completer
from chronoq.services.worker.execution import (
    ExecutionContext,
    cancelled_outcome,
    execute,
    execute_inline,
)
from chronoq.services.worker.live import LivePublisher
from chronoq.services.worker.starts import StartBatcher

_IDLE_RECHECK = 5.0
_PASSED_OVER_RECHECK = 0.2
_MAX_CLAIM = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    worker_id: str
    concurrency: int = 4096
    lease_seconds: float = 30.0
    lookahead: float = 0.5
    default_timeout: float = 3600.0
    output_limit: int = 1_048_576
    output_offload_bytes: int = 65536
    """Outputs above this many UTF-8 bytes go to the blob store (``offload``); 0 = never."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    shutdown_grace: float = 10.0
    env: Mapping[str, str] = field(default_factory=dict)
    max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS
    """Handed to ``release_runs``: how often a fire may be cut off before it is DEAD."""
    queues: frozenset[str] | None = None
    """Claim only runs of these queues (None: every queue)."""
    limits: ClaimLimits = NO_LIMITS
    """Cluster-wide concurrency limits, counted by the store at each claim."""

    @property
    def restricted(self) -> bool:
        """Whether a claim may pass runs over (not its queue, over a limit)."""
        return self.queues is not None or self.limits.any


@dataclass(slots=True)
class _Held:
    run: ClaimedRun
    task: asyncio.Task[None] | None = None
    started_at: datetime | None = None
    stop_reason: str | None = None  # "cancelled" | "shutdown" | "lease_lost"


class Worker:
    name = "worker"

    def __init__(
        self,
        dispatch: Dispatch,
        blob: BlobStore,
        notifier: Notifier,
        clock: Clock,
        metrics: Metrics,
        registry: ExecutorRegistry,
        config: WorkerConfig,
    ) -> None:
        self._dispatch = dispatch
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
            output_offload_bytes=config.output_offload_bytes,
        )
        self._completer = Completer(dispatch, notifier, clock, metrics)
        self._starts = StartBatcher(dispatch, config.worker_id, clock)
        self._live = LivePublisher(dispatch, config.worker_id, clock)
        self._held: dict[str, _Held] = {}
        self._due: dict[datetime, list[_Held]] = {}
        """Runs claimed ahead of time, by start instant: one timer per instant, not per run."""
        self._claims = Loop("worker-claim", self._claim, clock)
        self._heartbeats = Loop("worker-heartbeat", self._heartbeat, clock)
        self._started = False
        self._stopping = False

    @property
    def worker_id(self) -> str:
        return self._config.worker_id

    @property
    def held(self) -> int:
        """Runs this worker holds right now (claimed and not ended or handed back)."""
        return len(self._held)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._notifier.subscribe(RUNS, self._claims.wakeup.set)
        self._notifier.subscribe(CANCEL, self._on_cancel)
        self._completer.start()
        self._starts.start()
        self._claims.start()
        self._heartbeats.start()
        self._live.loop.start()

    async def stop(self) -> None:
        """Graceful: stop claiming, let runs finish within the grace, hand back the rest."""
        if self._stopping:
            return
        self._stopping = True
        await self._claims.stop()
        self._starts.close()  # runs not started yet stay unstarted: handed back below
        self._drop_timers()
        await self._drain_running()
        if not await self._completer.flush(self._config.shutdown_grace):
            log.error("worker: outcomes not recorded at stop; their leases will expire")
        await self._heartbeats.stop()
        await self._live.loop.stop()
        await self._starts.stop()
        await self._completer.stop()
        await self._hand_back()

    # -- claiming ------------------------------------------------------------------------

    async def _claim(self) -> float:
        free = self._config.concurrency - len(self._held)
        if free <= 0:
            return _IDLE_RECHECK  # a finishing run wakes us
        now = self._clock.now()
        limit = min(free, _MAX_CLAIM)
        claimed = await self._dispatch.claim_runs(
            ClaimRunsParams(
                worker_id=self.worker_id,
                now=now,
                horizon=now + timedelta(seconds=self._config.lookahead),
                lease_until=now + timedelta(seconds=self._config.lease_seconds),
                limit=limit,
                queues=self._config.queues,
                limits=self._config.limits,
            )
        )
        if claimed:
            failpoints.hit("after_dispatch")
        for run in claimed:
            self._hold(run)
        if len(claimed) == limit:
            return 0.0
        following = await self._dispatch.next_available_at()
        if following is None:
            return _IDLE_RECHECK
        wait = (following - self._clock.now()).total_seconds() - self._config.lookahead
        if wait <= 0 and self._config.restricted:
            # A run is ready but was passed over (another queue, or over a limit): look
            # again shortly (a slot frees when some worker's run ends), never spin.
            return _PASSED_OVER_RECHECK
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
            self._clock.call_later(delay, self._start_due, run.available_at)
        bucket.append(held)

    def _start_due(self, at: datetime) -> None:
        """Start every run due at ``at`` — all in this one callback, never a hair early."""
        early = (at - self._clock.now()).total_seconds()
        if early > 0:
            self._clock.call_later(early, self._start_due, at)
            return
        for held in self._due.pop(at, ()):
            if held.stop_reason is None:
                self._start(held)

    def _start(self, held: _Held) -> None:
        run = held.run
        outcome = execute_inline(self._ctx, run, self._clock.now())
        if outcome is not None:  # a no-op finished on the spot: no task, never marked
            self._finish(run.run_id, outcome)
            return
        live = self._live.watch(run)
        held.task = asyncio.create_task(self._execute(held, live), name=f"run-{run.run_id}")

    # -- executing -----------------------------------------------------------------------

    async def _execute(self, held: _Held, live: LiveTail) -> None:
        run = held.run
        try:
            outcome = await execute(self._ctx, run, lambda: self._begin(held), live)
        except asyncio.CancelledError:
            if held.stop_reason != "cancelled":
                raise  # shutdown (handed back) or lease lost (someone else owns it)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            outcome = cancelled_outcome(self._ctx, run, held.started_at or self._clock.now())
        if outcome is not None:
            self._finish(run.run_id, outcome)
        elif not self._stopping:  # the store did not start it: it is not ours any more
            log.info("worker: run %s was not started (no longer ours); dropping it", run.run_id)
            self._release_slot(run.run_id)
        # else: stopping before it started; it stays held and is handed back unstarted

    async def _begin(self, held: _Held) -> datetime | None:
        held.started_at = await self._starts.begin(held.run.run_id)
        return held.started_at

    def _finish(self, run_id: str, outcome: RunOutcome) -> None:
        held = self._held.get(run_id)
        self._release_slot(run_id)
        self._completer.report(outcome, frees=self._frees(held))

    def _frees(self, held: _Held | None) -> bool:
        """Whether ending this run may make another claimable, for any worker: a run of a
        gated job may have one buffered behind it, and under concurrency limits its slot
        frees (the limits are the cluster's: every worker runs with the same). A retry
        (the outcome's ``retry_at``) the completer sees itself."""
        return held is None or held.run.start_check or self._config.limits.any

    def _release_slot(self, run_id: str) -> None:
        was_full = len(self._held) >= self._config.concurrency
        self._held.pop(run_id, None)
        self._live.forget(run_id)
        if was_full and not self._stopping:
            self._claims.wakeup.set()

    def _on_cancel(self, run_id: str) -> None:
        """Kill the run (a CANCEL hint, or ``LeaseRenewal.cancel``); it ends CANCELLED."""
        held = self._held.get(run_id)
        if held is None or held.stop_reason is not None:
            return
        held.stop_reason = "cancelled"
        if held.task is not None:
            held.task.cancel()
            return
        # not started yet: its timer bucket skips it
        self._finish(run_id, cancelled_outcome(self._ctx, held.run, self._clock.now()))

    # -- leases --------------------------------------------------------------------------

    async def _heartbeat(self) -> float:
        interval = self._config.lease_seconds / 3
        ids = [rid for rid, h in self._held.items() if h.stop_reason is None]
        if not ids:
            return interval
        failpoints.hit("at_lease_renewal")
        until = self._clock.now() + timedelta(seconds=self._config.lease_seconds)
        renewal = await self._dispatch.extend_leases(self.worker_id, ids, until)
        kept = set(renewal.held)
        for run_id in ids:
            held = self._held.get(run_id)
            if run_id in kept or held is None or held.stop_reason is not None:
                continue
            log.warning("worker: lost the lease of run %s; abandoning it", run_id)
            self._abandon(held, "lease_lost")
            self._release_slot(run_id)
        for run_id in renewal.cancel:
            self._on_cancel(run_id)
        return interval

    def _abandon(self, held: _Held, reason: str) -> None:
        held.stop_reason = reason
        if held.task is not None:
            held.task.cancel()

    # -- stopping ------------------------------------------------------------------------

    def _drop_timers(self) -> None:
        """Runs waiting for their start instant never start; they stay held for hand-back."""
        for held in self._held.values():
            if held.task is None and held.stop_reason is None:
                held.stop_reason = "shutdown"
        self._due.clear()

    async def _drain_running(self) -> None:
        """Give running attempts ``shutdown_grace``, then kill the rest (they stay held)."""
        running = [h for h in self._held.values() if h.task is not None and not h.task.done()]
        if not running:
            return
        grace = self._config.shutdown_grace
        log.info("worker: waiting up to %.0fs for %d runs", grace, len(running))
        await self._clock.wait(_all_done([h.task for h in running if h.task]), grace)
        killed = [h for h in running if h.task is not None and not h.task.done()]
        for held in killed:
            self._abandon(held, "shutdown")
        await asyncio.gather(*(h.task for h in killed if h.task), return_exceptions=True)

    async def _hand_back(self) -> None:
        run_ids = list(self._held)
        if not run_ids:
            return
        params = ReleaseParams(
            worker_id=self.worker_id,
            run_ids=run_ids,
            now=self._clock.now(),
            max_interruptions=self._config.max_interruptions,
        )
        try:
            count = await self._dispatch.release_runs(params)
        except Exception:
            log.exception("worker: handing back %d runs failed; leases will expire", len(run_ids))
        else:
            log.info("worker: handed back %d of %d unfinished runs", count, len(run_ids))
        self._held.clear()


def _all_done(tasks: list[asyncio.Task[None]]) -> asyncio.Event:
    """An event set once every task in ``tasks`` is done."""
    done = asyncio.Event()
    left = len(tasks)

    def one_done(_task: asyncio.Task[None]) -> None:
        nonlocal left
        left -= 1
        if left == 0:
            done.set()

    for task in tasks:
        task.add_done_callback(one_done)
    if not tasks:
        done.set()
    return done
