"""``QueuedDispatch``: the Dispatch port with a run queue (Redis Streams, SQS) in front
of the store's run table. The store stays the source of truth (DESIGN §3).

* **Outbox.** The run table is the outbox (``ports.dispatch.Outbox``): a QUEUED run
  is "unpublished" until a message naming it was sent. ``claim_due`` sends the new
  runs at once, in the background (the fast path), and marks them; the leader's
  ``relay`` (every half second, ``services.coordinator``) sends whatever is still
  unpublished: a send that failed, a process that died between the store commit and
  the send, a retry's next attempt coming due, a run requeued by
  ``reap_lost``/``release_runs``. It also sends again runs published long ago
  (``republish_after``) or into a broker that is now empty (``depth() == 0``): an
  emptied broker is rebuilt from the store.
* **Claiming.** ``claim_runs`` receives messages (a short long poll) and leases
  exactly the runs they name, with compare-and-set in the store
  (``claim_runs_by_id``). A message whose run is not QUEUED (a duplicate delivery, a
  run already running or ended, a forged id) is acknowledged and leases nothing, so
  nothing executes twice. A run not available yet (clock skew) has its message
  hidden until it is.
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
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from chronoq.domain.clock import Clock, SystemClock
from chronoq.domain.jobs import ClaimedRun, Run, RunOutcome
from chronoq.domain.live_output import LiveOutput
from chronoq.errors import ValidationError
from chronoq.ports.dispatch import (
    ClaimDueParams,
    ClaimRunsParams,
    Dispatch,
    LeaseRenewal,
    Outbox,
    OutboxParams,
    ReapParams,
    ReleaseParams,
)
from chronoq.ports.runqueue import Delivery, RunQueue

log = logging.getLogger("chronoq")

RECEIVE_WAIT = 2.0
"""Longest a ``claim_runs`` waits for a first message (a long poll, not a spin; a
message arriving ends it at once, and a worker's stop cancels it)."""
PUBLISH_AHEAD = 5.0
"""Runs are sent this long before they are available (the longest picker look-ahead);
workers claim that far ahead and start each run at its ``available_at``."""
SETTLE = 0.5
"""The relay leaves never-sent runs triggered less than this ago to the picker that is
sending them right now (one relay period: fewer duplicate messages, none lost)."""
REPUBLISH_AFTER = 120.0
"""A run still QUEUED this long after its message was sent is sent again: the last
resort for a broker that lost some messages but not all (an empty broker is caught by
its depth within seconds, dead letters are drained). Not shorter: while workers are
saturated, runs wait QUEUED with their message in the broker, and each pass of this
rule adds one more message per waiting run."""
BROKER_CHECK_EVERY = 2.0
"""The relay asks the broker for its depth and dead letters at most this often (the
store's outbox it reads every pass): moto and SQS bill and slow down per call."""
MANY_DELIVERIES = 5
"""A message received more often than this is logged: its holders keep dying."""
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
        """``clock``: the roles' clock (how long a receive waited; see the module doc)."""
        self._store = store
        self._clock = clock or SystemClock()
        self._queue = queue
        self._wait = receive_wait
        self._ahead = timedelta(seconds=publish_ahead)
        self._settle = timedelta(seconds=settle)
        self._republish_after = timedelta(seconds=republish_after)
        self._batch = batch
        self._check_every = timedelta(seconds=BROKER_CHECK_EVERY)
        self._receipts: dict[str, str] = {}
        """The message in hand for each run this process leased (run id -> receipt)."""
        self._hold = 30.0
        """Seconds a held message stays hidden: the lease length of the last claim."""
        self._checked_at: datetime | None = None
        """When the relay last asked the broker for its depth and dead letters."""
        self._side: set[asyncio.Task[None]] = set()
        """Sends, extends and acks in flight: never awaited by the store's path (``_later``)."""

    @property
    def queue(self) -> RunQueue:
        return self._queue

    async def start(self) -> None:
        await self._store.start()
        await self._queue.start()

    async def close(self) -> None:
        if self._side:  # acks of the last outcomes: a moment to finish, then dropped
            await asyncio.wait(set(self._side), timeout=2.0)
            for task in set(self._side):
                task.cancel()
        try:
            await self._queue.close()
        finally:
            await self._store.close()

    # -- pickers: the store, then the fast path of the outbox ------------------------------

    async def fence_shards(self, epoch: int, owners: Mapping[int, str]) -> bool:
        return await self._store.fence_shards(epoch, owners)

    async def claim_due(self, params: ClaimDueParams) -> list[Run]:
        runs = await self._store.claim_due(params)
        soon = params.now + self._ahead  # later ones are the relay's when they come near
        ids = [r.run_id for r in runs if r.available_at <= soon]
        if ids:
            # In the background: a slow or dead broker must not hold the picker up (its
            # recurring jobs' next fires would be coalesced). Committed runs stand; a send
            # that fails or is dropped is the relay's.
            self._later("send", self._publish(ids, params.now))
        return runs

    async def next_due_at(self, shards: Sequence[int] | None) -> datetime | None:
        return await self._store.next_due_at(shards)

    # -- the relay (leader) ------------------------------------------------------------------

    async def relay(self, now: datetime) -> int:
        """Send every QUEUED run that needs a message (``ports.dispatch.Relay``)."""
        republish: datetime | None = None  # sent runs are looked at only with the broker
        sent = 0
        checked = self._checked_at
        if checked is None or not timedelta(0) <= now - checked < self._check_every:
            republish = now - self._republish_after
            if await self._queue.depth() == 0:
                republish = now  # an empty broker holds no message for any QUEUED run
            sent += await self._resend_dead(now)
            self._checked_at = now
        while True:
            ids = await self._store.unpublished_runs(
                OutboxParams(
                    horizon=now + self._ahead,
                    settled_before=now - self._settle,
                    republish_before=republish,
                    limit=self._batch,
                )
            )
            if ids:
                await self._publish(ids, now)
            sent += len(ids)
            if len(ids) < self._batch:
                return sent

    async def _resend_dead(self, now: datetime) -> int:
        """Dead letters: messages received too often without an ack (receivers died
        before claiming, or the store was down). Only a hint: the store decides DEAD (the
        lost-run rule counts interruptions of STARTED runs). A run still QUEUED needs a
        message; one that is not is acknowledged by the worker that receives it."""
        dead = await self._queue.drain_dead(self._batch)
        if dead:
            log.warning("dispatch: %d dead-lettered messages sent again", len(dead))
            await self._publish(dead, now)
        return len(dead)

    async def _publish(self, run_ids: list[str], now: datetime) -> None:
        await self._queue.send(run_ids)  # durable before it returns
        # A crash here sends these runs once more on the next relay pass: harmless.
        await self._store.mark_published(run_ids, now)

    # -- workers -------------------------------------------------------------------------

    async def claim_runs(self, params: ClaimRunsParams) -> list[ClaimedRun]:
        if params.queues is not None or params.limits.any:
            # Messages come in publish order, whatever their queue: refuse, never ignore
            # (Settings refuses the options with --dispatch at start; docs/queues.md).
            raise ValidationError(
                "a broker dispatch claims every queue in publish order: --queues and"
                " concurrency limits need the store's own dispatch (docs/queues.md)",
                field="queues",
            )
        hold = max((params.lease_until - params.now).total_seconds(), 1.0)
        self._hold = hold
        deliveries = await self._queue.receive(
            params.worker_id, params.limit, wait=self._wait, hold=hold
        )
        if not deliveries:
            return []
        waited = self._clock.now() - params.now
        if waited > timedelta(0):  # the lease starts now, not when the receive began
            params = replace(params, now=params.now + waited, horizon=params.horizon + waited,
                             lease_until=params.lease_until + waited)  # fmt: skip
        first: dict[str, Delivery] = {}
        spent: list[str] = []  # receipts to acknowledge: they lease nothing
        for delivery in deliveries:
            if delivery.run_id in first:
                spent.append(delivery.receipt)  # the same run twice in one batch
            else:
                first[delivery.run_id] = delivery
        horizon = max(params.horizon, params.now + self._ahead)
        result = await self._store.claim_runs_by_id(replace(params, horizon=horizon), list(first))
        for run in result.claimed:
            delivery = first.pop(run.run_id)
            self._receipts[run.run_id] = delivery.receipt
            if delivery.deliveries > MANY_DELIVERIES:
                log.warning("dispatch: run %s leased at its %dth delivery",
                            run.run_id, delivery.deliveries)  # fmt: skip
        for run_id, available_at in result.waiting.items():
            delivery = first.pop(run_id)
            wait = max((available_at - params.now).total_seconds(), 0.0)
            self._later("extend", self._queue.extend([delivery.receipt], wait))
        spent += [d.receipt for d in first.values()]  # not claimable: duplicate or stale
        if spent:
            self._later("ack", self._queue.ack(spent))
        return result.claimed

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
            self._later("extend", self._queue.extend(held, self._hold))
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
        receipts = [r for r in (self._receipts.pop(i, None) for i in run_ids) if r is not None]
        if receipts:
            self._later("ack", self._queue.ack(receipts))

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
