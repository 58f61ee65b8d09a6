"""The worker's completer: untrusted output never blocks recording (MemoryStore + FakeClock).

* a batch the store refuses is split: the other outcomes are stored, the refused one
  is recorded as FAILED with the reason and no output; if even that is refused it is
  dropped and the run stays RUNNING until its lease expires;
* ``UnavailableError`` is retried with backoff, forever, and nothing is lost.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest

from chronoq.adapters.memory import MemoryNotifier
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import ClaimedRun, Job, Run, RunOutcome
from chronoq.domain.states import JobStatus, RunStatus
from chronoq.errors import UnavailableError, ValidationError
from chronoq.observability.metrics import Metrics
from chronoq.ports.dispatch import ClaimDueParams, ClaimRunsParams
from chronoq.services.base import Backoff
from chronoq.services.worker.completer import UNRECORDABLE, Completer
from chronoq.testing import FakeClock

try:
    from chronoq.testing import MemoryStore
except ImportError:  # pragma: no cover - only while the memory adapter is being written
    pytest.skip("chronoq.testing.MemoryStore is not importable yet", allow_module_level=True)

USER = "alice"
WORKER = "w1"
POISON = "poison"


class PickyStore:
    """A store whose ``complete_runs`` refuses some outcomes, or is down for a while."""

    def __init__(self, inner: Any, clock: FakeClock) -> None:
        self.inner = inner
        self.clock = clock
        self.refuse_run: set[str] = set()
        self.down_for_calls = 0
        self.calls: list[tuple[float, int]] = []  # (fake monotonic time, batch size)

    async def complete_runs(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        self.calls.append((self.clock.monotonic(), len(outcomes)))
        if self.down_for_calls > 0:
            self.down_for_calls -= 1
            raise UnavailableError("the store is down")
        for outcome in outcomes:
            if POISON in outcome.output or outcome.run_id in self.refuse_run:
                raise ValidationError(f"the store refuses run {outcome.run_id[-4:]}")
        result: list[bool] = await self.inner.complete_runs(outcomes)
        return result


class Rig:
    def __init__(self, store: Any, clock: FakeClock, backoff: Backoff) -> None:
        self.store = store
        self.clock = clock
        self.picky = PickyStore(store, clock)
        self.metrics = Metrics()
        self.completer = Completer(self.picky, MemoryNotifier(), clock, self.metrics, backoff)

    async def running(self, count: int) -> list[ClaimedRun]:
        """``count`` runs RUNNING under ``WORKER``."""
        now = self.clock.now()
        jobs = [self.job() for _ in range(count)]
        await self.store.insert_jobs(jobs)
        await self.store.claim_due(ClaimDueParams(shards=None, now=now, horizon=now))
        lease = now + timedelta(seconds=30)
        params = ClaimRunsParams(worker_id=WORKER, now=now, horizon=now, lease_until=lease)
        claimed: list[ClaimedRun] = await self.store.claim_runs(params)
        assert len(claimed) == count
        return claimed

    def job(self) -> Job:
        now = self.clock.now()
        return Job(
            job_id=new_id(), user_id=USER, project_id="p", payload="fake:x", payload_ref=None,
            payload_size=6, cron_schedule=None, timezone=None, next_fire_at=now, shard_id=0,
            status=JobStatus.PENDING, max_retries=0, timeout_seconds=None, created_at=now,
            updated_at=now,
        )  # fmt: skip

    def outcome(self, run: ClaimedRun, output: str) -> RunOutcome:
        now = self.clock.now()
        return RunOutcome(
            run_id=run.run_id, worker_id=WORKER, attempt=run.attempt, status=RunStatus.COMPLETED,
            started_at=now, completed_at=now, output=output, exit_code=0, error_message=None,
        )  # fmt: skip

    async def run(self, claimed: ClaimedRun) -> Run:
        (run,) = await self.store.list_runs(USER, claimed.job_id)
        return run

    def unrecorded(self, fate: str) -> float:
        sample = "run_outcomes_unrecorded_total"
        return self.metrics.registry.get_sample_value(sample, {"fate": fate}) or 0.0


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    store = MemoryStore()
    await store.start()
    rig = Rig(store, FakeClock(), Backoff(first=1.0, cap=8.0))
    rig.completer.start()
    yield rig
    await rig.completer.stop()
    await store.close()


async def test_an_outcome_the_store_refuses_is_recorded_as_failed_and_the_others_stored(
    rig: Rig,
) -> None:
    runs = await rig.running(3)
    for run, output in zip(runs, ["ok 1", f"bad {POISON}", "ok 3"], strict=True):
        rig.completer.report(rig.outcome(run, output))
    assert await rig.completer.flush(1.0)
    assert rig.picky.calls[0][1] == 3, "the three outcomes went in one batch first"
    good1, bad, good3 = [await rig.run(r) for r in runs]
    assert (good1.status, good1.output) == (RunStatus.COMPLETED, "ok 1")
    assert (good3.status, good3.output) == (RunStatus.COMPLETED, "ok 3")
    assert bad.status is RunStatus.FAILED
    assert bad.output == "" and bad.error_message is not None
    assert bad.error_message.startswith(UNRECORDABLE) and "refuses" in bad.error_message
    assert rig.unrecorded("failed") == 1


async def test_an_outcome_refused_even_as_failed_is_dropped_and_the_others_stored(
    rig: Rig,
) -> None:
    runs = await rig.running(2)
    rig.picky.refuse_run.add(runs[0].run_id)
    for run in runs:
        rig.completer.report(rig.outcome(run, "fine"))
    assert await rig.completer.flush(1.0)
    dropped, stored = [await rig.run(r) for r in runs]
    assert dropped.status is RunStatus.RUNNING, "left to its lease and the reaper"
    assert stored.status is RunStatus.COMPLETED
    assert rig.unrecorded("dropped") == 1
    rig.completer.report(rig.outcome(runs[1], "later"))  # the completer still works
    assert await rig.completer.flush(1.0)


async def test_an_unavailable_store_is_retried_with_backoff_until_it_answers(rig: Rig) -> None:
    runs = await rig.running(2)
    rig.picky.down_for_calls = 6
    rig.completer.report(rig.outcome(runs[0], "first"))
    await rig.clock.advance(0)
    rig.completer.report(rig.outcome(runs[1], "during the outage"))
    flushing = asyncio.create_task(rig.completer.flush(10.0))
    await rig.clock.advance(10.0)
    assert not await flushing, "nothing is recorded while the store is down"
    assert (await rig.run(runs[0])).status is RunStatus.RUNNING
    await rig.clock.run_until(lambda: len(rig.picky.calls) >= 8, within=60.0, step=0.5)
    assert await rig.completer.flush(1.0)
    times = [t for t, _ in rig.picky.calls]
    gaps = [b - a for a, b in itertools.pairwise(times[:6])]
    backoff = Backoff(first=1.0, cap=8.0)
    for failures, gap in enumerate(gaps, start=1):
        ceiling = min(backoff.cap, backoff.first * 2 ** (failures - 1))
        assert ceiling / 2 - 1e-9 <= gap <= ceiling + 1e-9, (failures, gaps)
    assert sum(gaps) > 8.0, "backed off, not hammering the store"
    assert [(await rig.run(r)).status for r in runs] == [RunStatus.COMPLETED] * 2
    assert rig.unrecorded("failed") == rig.unrecorded("dropped") == 0
