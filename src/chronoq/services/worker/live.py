"""Publishing the output of running runs, so any api process can stream it (issue 10.3).

The api may run on another host than the worker, so the output travels through the store.
Each run the worker executes gets a ``LiveTail`` (the newest ``LIVE_OUTPUT_BYTES`` of its
output, cleaned as final outputs are), fed by the executor as the process writes. Once a
second the publisher puts the window of every run whose output grew since its last put,
all in one ``Dispatch.put_live_outputs`` call (compare-and-set on the worker and attempt:
a run that ended, was cancelled or lost meanwhile takes nothing, and is forgotten here).
A quiet run costs nothing; a chatty one one row write a second. All runs together put at
most ``LIVE_BUDGET_BYTES`` a second: past that, the runs published longest ago go first
and the others wait for the next tick, so a thousand chatty jobs cost the store a bounded
write rate (each is then refreshed less often). The store drops the window when the run's
outcome is recorded; the final output is the outcome's.
"""

from __future__ import annotations

from dataclasses import dataclass

from chronoq.domain.clock import Clock
from chronoq.domain.jobs import ClaimedRun
from chronoq.domain.live_output import LiveOutput, LiveTail
from chronoq.ports.dispatch import Dispatch
from chronoq.services.base import Loop

LIVE_INTERVAL = 1.0
"""Seconds between two puts of a run's output: a reader sees new output this late at most
(plus its own poll), while the budget allows."""
LIVE_BUDGET_BYTES = 8 * 1_048_576
"""Bytes of windows put per tick, all runs together (at least one run's window)."""


@dataclass(slots=True)
class _Watched:
    attempt: int
    tail: LiveTail
    published: int = 0
    """``tail.end`` at the last put the store took."""
    last_tick: int = 0
    """The tick of its last put: the runs waiting longest go first."""


class LivePublisher:
    """The live output of this worker's running runs; ``loop`` publishes it."""

    def __init__(
        self, dispatch: Dispatch, worker_id: str, clock: Clock, budget: int = LIVE_BUDGET_BYTES
    ) -> None:
        self._dispatch = dispatch
        self._worker_id = worker_id
        self._budget = budget
        self._ticks = 0
        self._watched: dict[str, _Watched] = {}
        self.loop = Loop("worker-live-output", self._tick, clock)

    def watch(self, run: ClaimedRun) -> LiveTail:
        """A tail for the executor of ``run`` to feed; published until ``forget``."""
        watched = _Watched(run.attempt, LiveTail())
        self._watched[run.run_id] = watched
        return watched.tail

    def forget(self, run_id: str) -> None:
        """The run ended or is not this worker's any more: publish nothing more of it."""
        self._watched.pop(run_id, None)

    async def _tick(self) -> float:
        self._ticks += 1
        grown = self._within_budget(
            [(run_id, w, w.tail.end) for run_id, w in self._watched.items()
             if w.tail.end != w.published]
        )  # fmt: skip
        if not grown:
            return LIVE_INTERVAL
        outputs = []
        for run_id, watched, _end in grown:
            start, text = watched.tail.snapshot()
            outputs.append(
                LiveOutput(run_id=run_id, attempt=watched.attempt, start=start, text=text)
            )
        applied = await self._dispatch.put_live_outputs(self._worker_id, outputs)
        for (run_id, watched, end), ok in zip(grown, applied, strict=True):
            if ok:
                watched.published = end
                watched.last_tick = self._ticks
            elif self._watched.get(run_id) is watched:
                self.forget(run_id)  # ended, cancelled or lost: the store takes no more
        return LIVE_INTERVAL

    def _within_budget(
        self, grown: list[tuple[str, _Watched, int]]
    ) -> list[tuple[str, _Watched, int]]:
        """The runs to put now: longest unpublished first, while the budget lasts."""
        grown.sort(key=lambda item: item[1].last_tick)
        chosen: list[tuple[str, _Watched, int]] = []
        spent = 0
        for item in grown:
            size = item[1].tail.size
            if chosen and spent + size > self._budget:
                break
            chosen.append(item)
            spent += size
        return chosen
