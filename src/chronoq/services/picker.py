"""The picker role: turns due fires into runs.

It sleeps until the earliest fire in its shards is within the look-ahead (or
a submission wakes it), then claims every fire due up to ``now + lookahead``:
the store creates each run and the job's next fire in one transaction. Runs
claimed early carry their exact ``scheduled_for``; workers start them then, so
a burst of fires due in the same second starts together, never early.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from datetime import timedelta

from chronoq import failpoints
from chronoq.domain.clock import Clock
from chronoq.domain.ratelimit import TokenBucket
from chronoq.observability.metrics import Metrics
from chronoq.ports.notify import FIRES, RUNS, Notifier
from chronoq.ports.store import ClaimDueParams, Store
from chronoq.services.assignment import AssignmentFollower
from chronoq.services.base import Wakeup, cancel_and_wait, log, spawn

_IDLE_RECHECK = 5.0
"""Longest sleep without a hint: bounds the delay if a wake-up is ever lost."""
_ERROR_BACKOFF = 0.5


class Picker:
    name = "picker"

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: Clock,
        metrics: Metrics,
        *,
        lookahead: float,
        assignment: AssignmentFollower | None = None,
        wakeup: Wakeup | None = None,
        batch: int = 1000,
        dispatch_rate: float = math.inf,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._metrics = metrics
        self._lookahead = timedelta(seconds=lookahead)
        self._assignment = assignment
        self._batch = batch
        # At most one second's worth at once (and never more than a batch).
        self._bucket = TokenBucket(rate=dispatch_rate, burst=max(min(batch, dispatch_rate), 1))
        self._wakeup = wakeup or Wakeup()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._notifier.subscribe(FIRES, self._wakeup.set)
        self._task = spawn(self._loop(), "picker")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                delay = await self.tick()
            except Exception:
                log.exception("picker: claiming due fires failed; retrying")
                delay = _ERROR_BACKOFF
            await self._wakeup.wait(delay)

    async def tick(self) -> float:
        """Claim what is due; return how long to sleep before the next look."""
        shards: Sequence[int] | None = None
        owner, epoch = None, None
        if self._assignment is not None:  # distributed: only our shards, fenced
            assignment = await self._assignment.current()
            if not assignment.shards:
                return self._assignment.seconds_to_refresh() or 1.0
            shards, owner, epoch = assignment.shards, assignment.owner, assignment.epoch
        limit = min(self._batch, self._bucket.available(time.monotonic()))
        if limit < 1:
            return self._bucket.wait_for_one()  # rate-capped: let the backlog drain
        now = self._clock.now()
        runs = await self._store.claim_due(
            ClaimDueParams(
                shards=shards, now=now, horizon=now + self._lookahead, limit=limit,
                owner=owner, epoch=epoch,
            )
        )  # fmt: skip
        self._bucket.take(len(runs))
        if runs:
            failpoints.hit("after_claim")
            self._metrics.jobs_scanned.inc(len(runs))
            self._metrics.jobs_enqueued.inc(len(runs))
            self._notifier.publish(RUNS)
            if len(runs) == limit:
                return self._bucket.wait_for_one()
        longest = _IDLE_RECHECK
        if self._assignment is not None:
            longest = max(self._assignment.seconds_to_refresh(), 0.05)
        next_due = await self._store.next_due_at(shards)
        if next_due is None:
            return longest
        wait = (next_due - self._lookahead - self._clock.now()).total_seconds()
        if wait <= 0 and not runs and self._assignment is not None:
            self._assignment.invalidate()  # due work but nothing claimed: our epoch is stale
            return 0.05
        return min(max(wait, 0.001), longest)
