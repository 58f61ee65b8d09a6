"""The worker's completer over every real store: one refused outcome never blocks the rest.

Issue "Foundations", item 1, on SQLite, PostgreSQL and the memory store: a store error
injected for ONE outcome of a batch, and an outcome whose text skipped cleaning (a raw
NUL, which PostgreSQL refuses) — the other outcomes of the batch are stored, and the
refused run is recorded as FAILED with the reason instead of being retried forever.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from chronoq.domain.clock import SystemClock
from chronoq.domain.jobs import ClaimedRun, RunOutcome
from chronoq.domain.states import RunStatus
from chronoq.errors import ValidationError
from chronoq.observability.metrics import Metrics
from chronoq.ports.store import Store
from chronoq.services.worker.completer import UNRECORDABLE, Completer

from .helpers import T0, claim_due, claim_runs, make_job, outcome, run_by_id


class Silent:
    def publish(self, channel: str, message: str = "") -> None:
        return None


class RefusesOne:
    """The store, except that a batch holding ``poison``'s success is refused."""

    def __init__(self, store: Store, poison: str) -> None:
        self._store = store
        self._poison = poison
        self.refused = 0

    async def complete_runs(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        if any(o.run_id == self._poison and o.status is RunStatus.COMPLETED for o in outcomes):
            self.refused += 1
            raise ValidationError("injected: the store refuses this outcome")
        return await self._store.complete_runs(outcomes)


async def _three_leased(store: Store) -> tuple[list[Any], list[ClaimedRun]]:
    jobs = [make_job() for _ in range(3)]
    await store.insert_jobs(jobs)
    assert len(await claim_due(store, T0)) == 3
    claimed = await claim_runs(store, "w1", T0)
    by_job = {c.job_id: c for c in claimed}
    return jobs, [by_job[j.job_id] for j in jobs]


async def _record(dispatch: Any, outcomes: list[RunOutcome]) -> None:
    completer = Completer(dispatch, Silent(), SystemClock(), Metrics())  # type: ignore[arg-type]
    completer.start()
    try:
        for o in outcomes:
            completer.report(o)
        assert await completer.flush(within=20), "the completer never finished the batch"
    finally:
        await completer.stop()


async def test_an_injected_refusal_of_one_outcome_records_the_others(store: Store) -> None:
    jobs, claimed = await _three_leased(store)
    proxy = RefusesOne(store, claimed[1].run_id)
    await _record(proxy, [outcome(c, RunStatus.COMPLETED) for c in claimed])

    assert proxy.refused >= 1
    for job, c in zip(jobs, claimed, strict=True):
        run = await run_by_id(store, job, c.run_id)
        if c is claimed[1]:
            assert run.status is RunStatus.FAILED, run
            assert (run.error_message or "").startswith(UNRECORDABLE), run
            assert "injected" in (run.error_message or "")
            assert run.output == ""
        else:
            assert (run.status, run.output) == (RunStatus.COMPLETED, "out"), run


async def test_raw_text_a_store_refuses_fails_only_its_own_run(store: Store) -> None:
    """Text that skipped ``clean_text`` (it cannot, through ``RunOutcome`` — this is the
    belt under the braces): each store keeps it or refuses it, and either way the batch
    is recorded and nothing wedges."""
    jobs, claimed = await _three_leased(store)
    outcomes = [outcome(c, RunStatus.COMPLETED) for c in claimed]
    raw = dataclasses.replace(outcomes[1])
    object.__setattr__(raw, "output", "a\x00b")
    outcomes[1] = raw
    await _record(store, outcomes)

    for job, c in zip(jobs, claimed, strict=True):
        run = await run_by_id(store, job, c.run_id)
        if c is claimed[1]:
            assert run.status in (RunStatus.COMPLETED, RunStatus.FAILED), run
            if run.status is RunStatus.FAILED:
                assert (run.error_message or "").startswith(UNRECORDABLE), run
        else:
            assert run.status is RunStatus.COMPLETED, run
