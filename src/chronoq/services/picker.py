"""The picker role: turns due fires into runs.

One ``Loop`` (``services.base``). Each tick claims every fire due up to
``now + lookahead`` (the store creates each run and the job's next fire in one
transaction), then sleeps on the ``Clock`` until the earliest fire in its
shards comes within the look-ahead, or until a hint wakes it: ``fires`` (a
submission) or, in distributed mode, ``assign`` (the leader fenced a new
assignment). Runs claimed early carry their exact ``scheduled_for``; workers
start them then, so a burst of fires due in the same second starts together,
never early.

Distributed mode: the picker claims only its shards, naming the (owner, epoch)
its ``AssignmentFollower`` read from the coordination; the store checks them
against its own fence record, so a picker with a stale assignment claims
nothing. A claim that finds nothing although work is due means exactly that:
the assignment is re-read, with a growing pause so a fenced-out picker does not
spin.

Per-user fires limit (``domain.limits``, docs/limits.md): the store claims a user's fires
only while the user has budget; the others wait in the due index. The picker then looks
again every ``DEFERRED_RECHECK`` rather than sleeping to the (past) head of the index.

Rate cap: a ``TokenBucket`` on the clock's monotonic time bounds the fires
dispatched per second, so a backlog after an outage drains without a stampede.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from chronoq import failpoints
from chronoq.domain.clock import Clock
from chronoq.domain.jobs import Run
from chronoq.domain.ratelimit import TokenBucket
from chronoq.observability.metrics import LIMIT_FIRES_PER_MINUTE, Metrics
from chronoq.ports.dispatch import ClaimDueParams, Dispatch
from chronoq.ports.notify import ASSIGN, FIRES, RUNS, Notifier
from chronoq.services.assignment import AssignmentFollower
from chronoq.services.base import Loop

IDLE_RECHECK = 5.0
"""Longest sleep without a hint: bounds the delay if a wake-up is ever lost."""
DEFERRED_RECHECK = 0.25
"""While due fires wait for their user's budget (``domain.limits``), the due index's head is
one of them: the picker looks again this often (other users' fires, budget freed)."""
_FOUND_NOTHING_FIRST = 0.05
"""First pause after a claim found nothing although work was due; doubles up to 1 s."""
_MIN_RATE_WAIT = 0.001
"""Shortest wait for a token: the bucket's float arithmetic can leave a token a hair
short (0.99999...), and a wait below the clock's resolution would never end it."""


@dataclass(frozen=True, slots=True)
class _Scope:
    """What one tick may claim: shards (None: all) and the fence it claims under."""

    shards: Sequence[int] | None
    owner: str | None = None
    epoch: int | None = None


class Picker:
    name = "picker"

    def __init__(
        self,
        dispatch: Dispatch,
        notifier: Notifier,
        clock: Clock,
        metrics: Metrics,
        *,
        lookahead: float,
        assignment: AssignmentFollower | None = None,
        batch: int = 1000,
        dispatch_rate: float = math.inf,
        user_max_fires_per_minute: int = 0,
    ) -> None:
        """``assignment`` set: distributed (fenced, only the shards it names); None: the
        only picker (embedded), unfenced, every shard. ``dispatch_rate``: fires per second
        (``inf``: no cap). ``user_max_fires_per_minute``: the per-user fires limit the
        store applies to each claim (``domain.limits``; 0: none)."""
        self._dispatch = dispatch
        self._notifier = notifier
        self._clock = clock
        self._metrics = metrics
        self._lookahead = timedelta(seconds=lookahead)
        self._assignment = assignment
        self._batch = batch
        # At most one second's worth at once (and never more than a batch).
        self._bucket = TokenBucket(rate=dispatch_rate, burst=max(min(batch, dispatch_rate), 1))
        self._found_nothing = 0
        self._user_fires = user_max_fires_per_minute
        self._deferred = False
        """The last claim left due jobs waiting for their user's budget."""
        self._loop = Loop("picker", self.tick, clock)
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._notifier.subscribe(FIRES, self._loop.wakeup.set)
        if self._assignment is not None:
            self._notifier.subscribe(ASSIGN, self._on_assign)
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def _on_assign(self, _message: str) -> None:
        if self._assignment is not None:
            self._assignment.invalidate()
        self._loop.wakeup.set()

    async def tick(self) -> float:
        """Claim what is due; return how long to sleep before the next look."""
        scope = await self._scope()
        if scope is None:  # no shards (yet): look again when the assignment may have changed
            return self._refresh_in()
        limit = min(self._batch, self._bucket.available(self._clock.monotonic()))
        if limit < 1:
            return self._rate_wait()  # rate-capped: let the backlog drain
        runs = await self._claim(scope, limit)
        if len(runs) == limit:
            return self._rate_wait()  # more may be due right now
        return await self._until_next_due(scope, claimed=bool(runs))

    async def _scope(self) -> _Scope | None:
        if self._assignment is None:
            return _Scope(shards=None)
        current = await self._assignment.current()
        self._metrics.shards_owned.set(len(current.shards))
        if not current.shards:
            return None
        return _Scope(shards=current.shards, owner=current.owner, epoch=current.epoch)

    async def _claim(self, scope: _Scope, limit: int) -> list[Run]:
        now = self._clock.now()
        started = self._clock.monotonic()
        self._deferred = False
        runs = await self._dispatch.claim_due(
            ClaimDueParams(
                shards=scope.shards, now=now, horizon=now + self._lookahead, limit=limit,
                owner=scope.owner, epoch=scope.epoch,
                max_fires_per_minute=self._user_fires, on_deferred=self._on_deferred,
            )
        )  # fmt: skip
        self._bucket.take(len(runs))
        if runs:
            failpoints.hit("after_claim")
            self._metrics.jobs_scanned.inc(len(runs))
            self._metrics.jobs_enqueued.inc(len(runs))
            self._metrics.enqueue_duration.observe(self._clock.monotonic() - started)
            self._notifier.publish(RUNS)
        return runs

    async def _until_next_due(self, scope: _Scope, *, claimed: bool) -> float:
        next_due = await self._dispatch.next_due_at(scope.shards)
        longest = IDLE_RECHECK if self._assignment is None else self._refresh_in()
        if next_due is None:
            self._found_nothing = 0
            return longest
        wait = (next_due - self._lookahead - self._clock.now()).total_seconds()
        if wait <= 0 and self._deferred:
            # The earliest due fire waits for its user's budget: that is not a stale
            # assignment, and the next due fire of another user may be any time soon.
            self._found_nothing = 0
            return DEFERRED_RECHECK
        if wait > 0 or claimed:
            self._found_nothing = 0
            return min(max(wait, 0.0), longest)
        # Due work, yet the claim found none: in distributed mode our (owner, epoch) is
        # stale or not fenced yet; re-read it, pausing longer each time so we never spin.
        if self._assignment is not None:
            self._assignment.invalidate()
        self._found_nothing += 1
        return min(_FOUND_NOTHING_FIRST * 2.0 ** min(self._found_nothing - 1, 10), 1.0)

    def _on_deferred(self, jobs: int) -> None:
        self._deferred = True
        if jobs:
            self._metrics.user_limit_deferrals.labels(LIMIT_FIRES_PER_MINUTE).inc(jobs)

    def _rate_wait(self) -> float:
        wait = self._bucket.wait_for_one()
        return 0.0 if wait <= 0 else max(wait, _MIN_RATE_WAIT)

    def _refresh_in(self) -> float:
        assert self._assignment is not None
        return max(self._assignment.seconds_to_refresh(), _FOUND_NOTHING_FIRST)
