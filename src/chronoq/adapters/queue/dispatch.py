"""``QueuedDispatch``: the Dispatch port with a run queue (Redis Streams, SQS) in front
of the store's run table. The store stays the source of truth (DESIGN §3).

* **Outbox.** The run table is the outbox (``relay.OutboxRelay``): ``claim_due`` sends
  the new runs at once, in the background (the fast path); the leader's ``relay`` sends
  whatever still needs a message, and rebuilds an emptied broker queue from the store.
* **Queues.** Each Chronoq queue has its own broker queue (``RunQueue.named``): a run's
  message goes to its queue's, and a worker receives only from the queues it serves
  (``--queues``; without it, every queue that has QUEUED runs, asked of the store at
  most once a second, and always ``default``). See ``receiver.QueueSet``.
* **Claiming.** A message is a doorbell that names its run: ``claim_runs`` receives
  messages (a short long poll), then leases with the store's own ``claim_runs`` — the
  same choice as without a broker: the worker's queues, highest priority first, the
  concurrency limits counted in the store — at most one run per message. A leased run
  whose message is in hand keeps it; the store may have chosen a better run whose
  message is still in the broker (it is spent when received: its run is not QUEUED any
  more). The other messages in hand: a run not QUEUED (a duplicate delivery, a run
  already running or ended, a forged id) is acknowledged, so nothing executes twice; a
  run not available yet (clock skew) is hidden until it is; a run passed over is handed
  back — at once if this worker was full (another may take it), after ``PASSED_HOLD``
  if a concurrency limit held it back (so workers do not spin on it). Every handing
  back counts as a delivery: a run held back long enough is dead-lettered, and the
  relay sends it again (dead letters are only a hint, the store decides).
* **Holding.** A leased run keeps its message in hand: ``extend_leases`` extends its
  hold with the lease; ``complete_runs``/``release_runs`` acknowledge it. Recovery
  from a dead worker is the store's (the reaper requeues, the relay re-sends); a
  message redelivered meanwhile finds the run not QUEUED and is acknowledged.
* Broker errors after a store commit are logged, never raised: what was committed
  stands, and the relay repairs what the broker missed. The fast path's sends, the
  extends and the acks run in the background (bounded in time and number), so a slow
  or dead broker never holds up a picker (its recurring fires would be coalesced), a
  heartbeat (the run would lose its lease) or an outcome.

Instants are the caller's, with one exception: a receive may wait (a long poll, a slow
broker), so ``claim_runs`` moves the caller's instants (now, horizon, lease) forward by
the time it waited, read on ``clock``. (Leasing with the instants of before the wait
gave runs a lease that had nearly run out: the reaper took them back at once.)
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from chronoq.adapters.queue.receiver import Held, QueueSet
from chronoq.adapters.queue.relay import MAX_QUEUES, REPUBLISH_AFTER, SETTLE, OutboxRelay
from chronoq.domain.clock import Clock, SystemClock
from chronoq.domain.jobs import ClaimedRun, Run, RunOutcome
from chronoq.domain.live_output import LiveOutput
from chronoq.domain.queues import DEFAULT_QUEUE
from chronoq.ports.dispatch import (
    ClaimDueParams,
    ClaimRunsParams,
    Dispatch,
    LeaseRenewal,
    Outbox,
    ReapParams,
    ReleaseParams,
)
from chronoq.ports.runqueue import RunQueue

log = logging.getLogger("chronoq")

RECEIVE_WAIT = 2.0
"""Longest a ``claim_runs`` waits for a first message (a long poll, not a spin; a
message arriving ends it at once, and a worker's stop cancels it)."""
PUBLISH_AHEAD = 5.0
"""Runs are sent this long before they are available (the longest picker look-ahead);
workers claim that far ahead and start each run at its ``available_at``."""
MANY_DELIVERIES = 5
"""A message received more often than this is logged: its holders keep dying."""
PASSED_HOLD = 1.0
"""A message whose run a concurrency limit held back comes back after this long (the
store path's workers look again every 0.2 s; a broker receive is dearer)."""
QUEUES_EVERY = 1.0
"""A worker of every queue asks the store which queues have QUEUED runs at most this
often (a new queue's first runs wait up to this long, plus one long poll)."""
SIDE_TIMEOUT = 10.0
"""Longest a background extend/ack may take (a broker that hangs, not refuses)."""
MAX_SIDE_CALLS = 64
"""Background broker calls in flight at most; more are dropped (the broker is down)."""


class OutboxStore(Dispatch, Outbox, Protocol):
    """A store whose run table can be the outbox (``PostgresStore``, ``MemoryStore``)."""


class QueuedDispatch:
    """Dispatch through ``queue``, with ``store`` as the truth (see the module docstring)."""

    def __init__(
        self,
        store: OutboxStore,
        queue: RunQueue,
        *,
        receive_wait: float = RECEIVE_WAIT,
        publish_ahead: float = PUBLISH_AHEAD,
        settle: float = SETTLE,
        republish_after: float = REPUBLISH_AFTER,
        batch: int = 1000,
        clock: Clock | None = None,
    ) -> None:
        """``queue``: the broker queue of ``default`` (the others are ``queue.named``);
        ``clock``: the roles' clock (how long a receive waited; see the module doc)."""
        self._store = store
        self._clock = clock or SystemClock()
        self._queue = queue
        self._queues = QueueSet(queue)
        self._wait = receive_wait
        self._ahead = timedelta(seconds=publish_ahead)
        self._relay = OutboxRelay(store, self._queues, publish_ahead=self._ahead, settle=settle,
                                  republish_after=republish_after, batch=batch)  # fmt: skip
        self._receipts: dict[str, Held] = {}
        """The message in hand for each run this process leased."""
        self._hold = 30.0
        """Seconds a held message stays hidden: the lease length of the last claim."""
        self._names: tuple[float, list[str]] = (-math.inf, [DEFAULT_QUEUE])
        """When a worker of every queue last asked the store for the queues, and them."""
        self._side: set[asyncio.Task[None]] = set()
        """Sends, extends and acks in flight: never awaited by the store's path (``_later``)."""

    @property
    def queue(self) -> RunQueue:
        """The broker queue of ``default``."""
        return self._queue

    async def depth(self) -> int:
        """Messages waiting or in flight in every broker queue this process has used."""
        return sum([await q.depth() for q in self._queues.started().values()])

    async def start(self) -> None:
        await self._store.start()
        await self._queues.start()

    async def close(self) -> None:
        if self._side:  # acks of the last outcomes: a moment to finish, then dropped
            await asyncio.wait(set(self._side), timeout=2.0)
            for task in set(self._side):
                task.cancel()
        try:
            await self._queues.close()
        finally:
            await self._store.close()

    # -- pickers: the store, then the fast path of the outbox ------------------------------

    async def fence_shards(self, epoch: int, owners: Mapping[int, str]) -> bool:
        return await self._store.fence_shards(epoch, owners)

    async def claim_due(self, params: ClaimDueParams) -> list[Run]:
        runs = await self._store.claim_due(params)
        soon = params.now + self._ahead  # later ones are the relay's when they come near
        due = [(r.run_id, r.queue) for r in runs if r.available_at <= soon]
        if due:
            # In the background: a slow or dead broker must not hold the picker up (its
            # recurring jobs' next fires would be coalesced). Committed runs stand; a send
            # that fails or is dropped is the relay's.
            self._later("send", self._relay.publish(due, params.now))
        return runs

    async def next_due_at(self, shards: Sequence[int] | None) -> datetime | None:
        return await self._store.next_due_at(shards)

    # -- the relay (leader) ------------------------------------------------------------------

    async def relay(self, now: datetime) -> int:
        """Send every QUEUED run that needs a message (``ports.dispatch.Relay``)."""
        return await self._relay.relay(now)

    # -- workers -------------------------------------------------------------------------

    async def claim_runs(self, params: ClaimRunsParams) -> list[ClaimedRun]:
        hold = max((params.lease_until - params.now).total_seconds(), 1.0)
        self._hold = hold
        names = sorted(params.queues) if params.queues is not None else await self._every_queue()
        held = await self._queues.receive(
            params.worker_id, names, params.limit, wait=self._wait, hold=hold
        )
        if not held:
            return []
        waited = self._clock.now() - params.now
        if waited > timedelta(0):  # the lease starts now, not when the receive began
            params = replace(params, now=params.now + waited, horizon=params.horizon + waited,
                             lease_until=params.lease_until + waited)  # fmt: skip
        first: dict[str, Held] = {}
        spent: list[Held] = []  # messages to acknowledge: they lease nothing
        for item in held:
            if item.delivery.run_id in first:
                spent.append(item)  # the same run twice in one batch
            else:
                first[item.delivery.run_id] = item
        if spent:
            self._later("ack", self._queues.ack(spent))
        horizon = max(params.horizon, params.now + self._ahead)
        wanted = min(params.limit, len(first))
        claimed = await self._store.claim_runs(replace(params, horizon=horizon, limit=wanted))
        for run in claimed:
            if run.run_id not in first:
                continue  # its own message is still in the broker: spent when received
            mine = self._receipts[run.run_id] = first.pop(run.run_id)
            if mine.delivery.deliveries > MANY_DELIVERIES:
                log.warning("dispatch: run %s leased at its %dth delivery",
                            run.run_id, mine.delivery.deliveries)  # fmt: skip
        if first:
            self._hand_back(first, await self._store.queued_runs(list(first)),
                            horizon, params.now, full=len(claimed) >= wanted)  # fmt: skip
        return claimed

    def _hand_back(
        self,
        left: dict[str, Held],
        queued: dict[str, datetime],
        horizon: datetime,
        now: datetime,
        *,
        full: bool,
    ) -> None:
        """The messages in hand whose run was not leased (see the module docstring)."""
        spent: list[Held] = []
        passed: list[Held] = []
        for run_id, item in left.items():
            available_at = queued.get(run_id)
            if available_at is None:
                spent.append(item)  # not QUEUED any more
            elif available_at <= horizon:
                passed.append(item)
            else:  # not due yet: hidden until it is
                wait = max((available_at - now).total_seconds(), 0.0)
                self._later("extend", self._queues.extend([item], wait))
        if spent:
            self._later("ack", self._queues.ack(spent))
        if passed:
            self._later("extend", self._queues.extend(passed, 0.0 if full else PASSED_HOLD))

    async def _every_queue(self) -> list[str]:
        """The queues a worker of every queue reads (see ``QUEUES_EVERY``)."""
        asked_at, names = self._names
        now = self._clock.monotonic()
        if not 0 <= now - asked_at < QUEUES_EVERY:
            found = await self._store.queued_queues(MAX_QUEUES)
            names = sorted({DEFAULT_QUEUE, *found})
            self._names = (now, names)
        return names

    async def next_available_at(self) -> datetime | None:
        return await self._store.next_available_at()

    async def mark_started(self, worker_id: str, run_ids: Sequence[str], at: datetime) -> list[str]:
        started = await self._store.mark_started(worker_id, run_ids, at)
        ours = set(started)
        self._let_go([r for r in run_ids if r not in ours])  # not ours any more: not run here
        return started

    async def extend_leases(
        self, worker_id: str, run_ids: Sequence[str], lease_until: datetime
    ) -> LeaseRenewal:
        renewal = await self._store.extend_leases(worker_id, run_ids, lease_until)
        kept = set(renewal.held)
        held = [self._receipts[r] for r in renewal.held if r in self._receipts]
        if held:
            self._later("extend", self._queues.extend(held, self._hold))
        self._let_go([r for r in run_ids if r not in kept])  # not ours any more
        return renewal

    async def put_live_outputs(self, worker_id: str, outputs: Sequence[LiveOutput]) -> list[bool]:
        return await self._store.put_live_outputs(worker_id, outputs)  # the store's alone

    async def complete_runs(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        applied = await self._store.complete_runs(outcomes)
        # Applied or not, the message is spent: a run that is not ours any more was
        # requeued (and is sent again by the relay) or belongs to another worker.
        self._let_go([o.run_id for o in outcomes])
        return applied

    async def release_runs(self, params: ReleaseParams) -> int:
        count = await self._store.release_runs(params)
        self._let_go(list(params.run_ids))  # requeued runs are unpublished again
        return count

    async def reap_lost(self, params: ReapParams) -> int:
        return await self._store.reap_lost(params)

    async def settled(self) -> None:
        """Wait until the background broker calls in flight are done (for tests)."""
        while self._side:
            await asyncio.wait(set(self._side))

    def _let_go(self, run_ids: Sequence[str]) -> None:
        held = [r for r in (self._receipts.pop(i, None) for i in run_ids) if r is not None]
        if held:
            self._later("ack", self._queues.ack(held))

    def _later(self, what: str, call: Coroutine[Any, Any, None]) -> None:
        """Run a broker call in the background, logged if it fails: the store's path never
        waits for the broker (see the module docstring). Dropped when too many are in
        flight (the broker is down): the relay and the store's compare-and-set cover it."""
        if len(self._side) >= MAX_SIDE_CALLS:
            call.close()
            return
        task = asyncio.create_task(self._quietly(what, call), name=f"runqueue-{what}")
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _quietly(self, what: str, call: Coroutine[Any, Any, None]) -> None:
        try:
            await asyncio.wait_for(call, SIDE_TIMEOUT)
        except Exception as exc:
            log.warning("dispatch: %s on the run queue failed (%s); the store decides", what, exc)
