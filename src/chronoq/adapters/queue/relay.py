"""``OutboxRelay``: the store's run table as the outbox of the broker queues.

A QUEUED run is "unpublished" until a message naming it was sent
(``ports.dispatch.Outbox``). The picker's ``claim_due`` sends new runs at once (the fast
path, ``publish``); the leader's ``relay`` (every half second, ``services.coordinator``)
sends whatever is still unpublished: a send that failed, a process that died between
the store commit and the send, a retry's next attempt coming due, a run requeued by
``reap_lost``/``release_runs``. Every ``BROKER_CHECK_EVERY`` it also looks at the
broker: it drains each queue's dead letters and sends them again, sends again runs
published long ago (``republish_after``), and rebuilds a broker queue found empty
(``depth() == 0`` while runs of that queue are QUEUED: none of them has a message there).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from chronoq.adapters.queue.receiver import QueueSet
from chronoq.ports.dispatch import Outbox, OutboxParams

log = logging.getLogger("chronoq")

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
MAX_QUEUES = 256
"""Most Chronoq queues with QUEUED runs looked at per pass (and read by a worker of
every queue)."""


class OutboxRelay:
    """Sends what the outbox says needs a message, into ``queues``."""

    def __init__(
        self,
        store: Outbox,
        queues: QueueSet,
        *,
        publish_ahead: timedelta,
        settle: float = SETTLE,
        republish_after: float = REPUBLISH_AFTER,
        batch: int = 1000,
    ) -> None:
        self._store = store
        self._queues = queues
        self._ahead = publish_ahead
        self._settle = timedelta(seconds=settle)
        self._republish_after = timedelta(seconds=republish_after)
        self._batch = batch
        self._check_every = timedelta(seconds=BROKER_CHECK_EVERY)
        self._checked_at: datetime | None = None
        """When the relay last asked the broker for its depth and dead letters."""

    async def publish(self, runs: list[tuple[str, str]], now: datetime) -> None:
        """Send one message per (run id, queue), then mark the runs published."""
        await self._queues.send(runs)  # durable before it returns
        # A crash here sends these runs once more on the next relay pass: harmless.
        await self._store.mark_published([run_id for run_id, _ in runs], now)

    async def relay(self, now: datetime) -> int:
        """Send every QUEUED run that needs a message; how many were sent."""
        republish: datetime | None = None  # sent runs are looked at only with the broker
        empty: list[str] = []
        sent = 0
        checked = self._checked_at
        if checked is None or not timedelta(0) <= now - checked < self._check_every:
            republish = now - self._republish_after
            for name in await self._store.queued_queues(MAX_QUEUES):
                queue = await self._queues.get(name)
                if await queue.depth() == 0:
                    empty.append(name)  # holds no message for any of its QUEUED runs
            sent += await self._resend_dead(now)
            self._checked_at = now
        sent += await self._pass(now, republish, None)
        if empty:  # an emptied broker queue is rebuilt from the store
            sent += await self._pass(now, now, empty)
        return sent

    async def _pass(
        self, now: datetime, republish: datetime | None, queues: list[str] | None
    ) -> int:
        sent = 0
        while True:
            due = await self._store.unpublished_runs(
                OutboxParams(
                    horizon=now + self._ahead,
                    settled_before=now - self._settle,
                    republish_before=republish,
                    queues=queues,
                    limit=self._batch,
                )
            )
            if due:
                await self.publish(due, now)
            sent += len(due)
            if len(due) < self._batch:
                return sent

    async def _resend_dead(self, now: datetime) -> int:
        """Dead letters: messages received too often without an ack (receivers died
        before claiming, a concurrency limit held their run back, or the store was down).
        Only a hint: the store decides DEAD (the lost-run rule counts interruptions of
        STARTED runs). A run still QUEUED needs a message; one that is not is
        acknowledged by the worker that receives it."""
        resent = 0
        for name, queue in self._queues.started().items():
            dead = await queue.drain_dead(self._batch)
            if dead:
                log.warning("dispatch: %d dead-lettered messages of queue %s sent again",
                            len(dead), name)  # fmt: skip
                await self.publish([(run_id, name) for run_id in dead], now)
            resent += len(dead)
        return resent
