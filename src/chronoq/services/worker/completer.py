"""Records run outcomes in batches, and never lets one outcome block the others.

Attempts that end within the same moment are recorded by one
``Dispatch.complete_runs`` call. Job output is untrusted, so recording is
built to survive whatever a job printed:

* ``UnavailableError`` (the store is down; nothing changed): the same batch is
  retried with backoff, forever — outcomes wait, they are not lost.
* Any other failure of a batch: its outcomes are recorded one by one, so the
  others are stored. An outcome that fails alone is recorded instead as that
  run's FAILED outcome with the reason (``could not record the outcome:
  <error>``, empty output); if even that fails, it is dropped with an error
  log, its lease expires and the reaper ends the run (``lost_run``).

``flush`` waits until everything reported so far is recorded (at shutdown).

After a batch is recorded the workers are hinted (``RUNS``) only if one of its outcomes
may have made a run claimable (``report``'s ``frees``): a retry, a run buffered behind
the ended one, a slot under a concurrency limit. Every other completion would wake every
worker of the cluster to claim nothing: at light load with the roles as separate
processes that was one NOTIFY and two empty claims per job.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from chronoq import failpoints
from chronoq.domain.clock import Clock
from chronoq.domain.jobs import RunOutcome
from chronoq.domain.states import RunStatus
from chronoq.observability.metrics import Metrics
from chronoq.ports.dispatch import Dispatch
from chronoq.ports.notify import RUNS, Notifier
from chronoq.services.base import Backoff, Loop, log
from chronoq.services.worker.retrying import until_available

_IDLE = 3600.0
"""A drain with nothing to do waits this long; every ``report`` wakes it at once."""

UNRECORDABLE = "could not record the outcome: "
"""Prefix of the error of a run whose own outcome the store refused."""


class Completer:
    """Batches outcomes into ``complete_runs`` calls (see the module docstring)."""

    def __init__(
        self,
        dispatch: Dispatch,
        notifier: Notifier,
        clock: Clock,
        metrics: Metrics,
        backoff: Backoff | None = None,
    ) -> None:
        self._dispatch = dispatch
        self._notifier = notifier
        self._clock = clock
        self._metrics = metrics
        self._backoff = backoff or Backoff()
        self._pending: list[RunOutcome] = []
        self._frees = False
        """An outcome pending may make a run claimable: hint the workers after recording."""
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = Loop("worker-completer", self._drain, clock)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        """Stop the loop; call ``flush`` first, or outcomes still pending are not recorded."""
        await self._loop.stop()

    def report(self, outcome: RunOutcome, *, frees: bool = True) -> None:
        """``frees``: recording it may make a run claimable (see the module docstring);
        False only when the caller knows it cannot."""
        failpoints.hit("after_execution")
        self._pending.append(outcome)
        self._frees = self._frees or frees or outcome.retry_at is not None
        self._idle.clear()
        self._loop.wakeup.set()

    async def flush(self, within: float) -> bool:
        """Wait until all outcomes reported so far are recorded; False if ``within`` s passed."""
        return await self._clock.wait(self._idle, within)

    async def _drain(self) -> float:
        while self._pending:
            batch, self._pending = self._pending, []
            frees, self._frees = self._frees, False
            await self._record(batch, frees)
        self._idle.set()
        return _IDLE

    async def _record(self, batch: list[RunOutcome], frees: bool) -> None:
        try:
            applied = await self._complete(batch)
        except Exception as exc:
            log.warning(
                "worker: recording %d outcomes failed (%s); recording them one by one",
                len(batch),
                exc,
            )
            applied = [await self._record_alone(outcome) for outcome in batch]
        failpoints.hit("after_result")
        stale = sum(1 for ok in applied if not ok)
        if stale:
            log.warning("worker: %d outcomes were stale (lease lost) and ignored", stale)
        if frees:
            self._notifier.publish(RUNS)

    async def _record_alone(self, outcome: RunOutcome) -> bool:
        try:
            (applied,) = await self._complete([outcome])
            return applied
        except Exception as exc:
            reason = f"{UNRECORDABLE}{exc}"
            log.error("worker: run %s: %s; recording it as FAILED", outcome.run_id, reason)
        fallback = dataclasses.replace(
            outcome, status=RunStatus.FAILED, output="", error_message=reason, retry_at=None
        )
        try:
            (applied,) = await self._complete([fallback])
        except Exception:
            log.exception(
                "worker: run %s: even its FAILED outcome could not be recorded; dropping it"
                " (its lease will expire and the reaper will end it)",
                outcome.run_id,
            )
            self._metrics.outcomes_unrecorded.labels("dropped").inc()
            return False
        self._metrics.outcomes_unrecorded.labels("failed").inc()
        return applied

    async def _complete(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        return await until_available(
            lambda: self._dispatch.complete_runs(outcomes),
            self._clock,
            self._backoff,
            f"recording {len(outcomes)} outcomes",
        )
