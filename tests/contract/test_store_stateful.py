"""Store contract, stateful: random interleavings of every operation, invariants after each step.

A Hypothesis state machine submits one-shot and ``@every`` jobs, moves time,
and plays a picker and three workers against one store (``MemoryStore``, and
``SqliteStore`` on a temporary file): claim_due, claim_runs, mark_started,
extend_leases, complete_runs (success, job failure with retries, stale
duplicates), cancel_job, reap_lost (by lease, by membership, expire_all) and
release_runs. Each rule checks what the port promises for that call against a
snapshot of the store taken before it; after every step the whole store is
read back and checked against RELIABILITY.md's invariants, as far as a store
alone can show them (``stateful_checks.check_store``). At the end of each
example every run is driven to an outcome and I1/I7 are checked (``teardown``).

Bounds: 1-4 jobs to start with, three workers, at most 40 steps per example,
120 examples on memory and 50 on SQLite (``SETTINGS``), one event loop per
example (``asyncio.Runner``); SQLite runs without fsync (durability is not
what this test shows). The file takes about 10 s.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chronoq.adapters.memory import MemoryStore
from chronoq.adapters.sqlite import SqliteStore
from chronoq.domain.jobs import ClaimedRun, Job, Run, RunOutcome
from chronoq.domain.policies import Overlap, Policies
from chronoq.domain.retry import attempts_left
from chronoq.domain.states import (
    JOB_TERMINAL,
    LOST_AT_SHUTDOWN,
    LOST_TO_LEASE,
    LOST_TO_MEMBERSHIP,
    JobStatus,
    RunStatus,
    outcome_status,
)
from chronoq.errors import ConflictError
from chronoq.ports.dispatch import ClaimDueParams, ClaimRunsParams, ReapParams, ReleaseParams
from chronoq.ports.store import Store

from . import stateful_checks as checks
from .helpers import T0, make_job
from .stateful_checks import MAX_INTERRUPTIONS, Attempt, Fire, Snapshot

T = TypeVar("T")

WORKERS = ("w1", "w2", "w3")
USERS = ("alice", "bob")
FAR = timedelta(days=365)

SETTINGS = settings(
    max_examples=120,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class StoreMachine(RuleBasedStateMachine):
    """One store, one picker, three workers; see the module docstring."""

    kind: ClassVar[str] = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.tmp: str | None = None
        if self.kind == "sqlite":
            self.tmp = tempfile.mkdtemp(prefix="chronoq-stateful-")
            self.store: Store = SqliteStore(Path(self.tmp) / "db.sqlite", synchronous="OFF")
        else:
            self.store = MemoryStore()
        self.call(self.store.start())
        self.now = T0
        self.accepted: dict[str, Job] = {}
        self.claimed_fires: set[Fire] = set()
        self.beliefs: dict[str, dict[str, ClaimedRun]] = {w: {} for w in WORKERS}
        """The runs each worker believes it holds, until it reports them (stale ones too)."""
        self.executed: set[Attempt] = set()
        self.snap = Snapshot({}, {})
        self.checks: list[Callable[[Snapshot], None]] = []
        """What the last rule expects of the store after it (checked with the next snapshot)."""
        self.healthy = True

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    # -- jobs ----------------------------------------------------------------------------------

    @initialize(
        jobs=st.lists(
            st.tuples(st.sampled_from([None, 2, 5]), st.integers(0, 2), st.sampled_from(USERS)),
            min_size=1,
            max_size=4,
        )
    )
    def some_jobs(self, jobs: list[tuple[int | None, int, str]]) -> None:
        """Start with work to do: one-shot (None) and ``@every`` jobs, due now."""
        for every, max_retries, user in jobs:
            cron = None if every is None else f"@every {every}s"
            self._submit(
                make_job(user_id=user, cron=cron, next_fire_at=self.now, max_retries=max_retries)
            )

    @rule(
        delay=st.sampled_from([0, 0, 1, 4]),
        max_retries=st.integers(0, 2),
        user=st.sampled_from(USERS),
    )
    def submit_one_shot(self, delay: int, max_retries: int, user: str) -> None:
        self._submit(make_job(user_id=user, next_fire_at=self._at(delay), max_retries=max_retries))

    @rule(
        every=st.sampled_from([2, 5]),
        delay=st.sampled_from([0, 1]),
        max_retries=st.integers(0, 1),
        user=st.sampled_from(USERS),
    )
    def submit_recurring(self, every: int, delay: int, max_retries: int, user: str) -> None:
        job = make_job(
            user_id=user,
            cron=f"@every {every}s",
            next_fire_at=self._at(delay),
            max_retries=max_retries,
        )
        self._submit(job)

    def _submit(self, job: Job) -> None:
        # This machine models runs of one job that may overlap; the overlap policies
        # (issue 9: the default is ``skip``) have their own contract tests.
        job = replace(job, policies=Policies(overlap=Overlap.ALLOW))
        self.call(self.store.insert_jobs([job]))
        self.accepted[job.job_id] = job
        try:
            self.call(self.store.insert_jobs([job]))
            raise AssertionError("a duplicate job id was accepted")
        except ConflictError:
            pass
        self.call(self.store.insert_jobs([job], if_absent=True))  # skipped silently
        other = next(u for u in USERS if u != job.user_id)
        assert self.call(self.store.get_job(other, job.job_id)) is None
        self.checks.append(lambda after: checks.equal(after.jobs[job.job_id], job))

    @rule(seconds=st.sampled_from([0.5, 1, 2, 5, 12, 40]))
    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @precondition(lambda self: self.accepted)
    @rule(data=st.data())
    def cancel_job(self, data: st.DataObject) -> None:
        busy = list(dict.fromkeys(r.job_id for r in self.snap.runs.values() if checks.running(r)))
        jobs = st.sampled_from(list(self.accepted))
        if busy:  # a cancel that reaches a running run is the interesting kind
            jobs = st.one_of(st.sampled_from(busy), jobs)
        job_id = data.draw(jobs, label="job")
        user = self.accepted[job_id].user_id
        before = self.snap
        other = next(u for u in USERS if u != user)
        assert self.call(self.store.cancel_job(other, job_id, self.now)) is None
        result = self.call(self.store.cancel_job(user, job_id, self.now))
        assert result is not None
        was = before.jobs[job_id]
        if was.status in JOB_TERMINAL:
            assert (result.job, result.running_run_ids) == (was, [])
            return
        assert result.job.status is JobStatus.CANCELLED
        assert result.job.next_fire_at is None
        running = [r for r in before.runs.values() if r.job_id == job_id]
        assert sorted(result.running_run_ids) == sorted(
            r.run_id for r in running if r.status is RunStatus.RUNNING
        )
        queued = [r.run_id for r in running if r.status is RunStatus.QUEUED]
        self.checks.append(lambda after: checks.all_cancelled(after, queued, self.now))

    # -- the picker ----------------------------------------------------------------------------

    @rule(ahead=st.sampled_from([0, 0, 2]), limit=st.integers(1, 4))
    def claim_due(self, ahead: int, limit: int) -> None:
        horizon = self._at(ahead)
        due = sorted(
            j.next_fire_at
            for j in self.snap.jobs.values()
            if j.next_fire_at is not None and j.next_fire_at <= horizon
        )
        params = ClaimDueParams(shards=None, now=self.now, horizon=horizon, limit=limit)
        runs = self.call(self.store.claim_due(params))
        assert [r.scheduled_for for r in runs] == due[:limit], "earliest due fires first"
        for run in runs:
            fire = (run.job_id, run.scheduled_for)
            assert fire not in self.claimed_fires, "a fire was claimed twice"
            self.claimed_fires.add(fire)
            assert (run.attempt, run.status, run.interruptions) == (1, RunStatus.QUEUED, 0)
            assert (run.available_at, run.triggered_at) == (run.scheduled_for, self.now)

    # -- workers -------------------------------------------------------------------------------

    @rule(
        worker=st.sampled_from(WORKERS),
        limit=st.integers(1, 4),
        lease=st.sampled_from([5, 30]),
        ahead=st.sampled_from([0, 2]),
        start=st.booleans(),
    )
    def claim_runs(self, worker: str, limit: int, lease: int, ahead: int, start: bool) -> None:
        """Lease runs; with ``start``, also mark them started at once, as a worker does (one
        status change still: the start is a field of RUNNING)."""
        horizon, until = self._at(ahead), self._at(lease)
        available = sorted(
            r.available_at
            for r in self.snap.runs.values()
            if r.status is RunStatus.QUEUED and r.available_at <= horizon
        )
        params = ClaimRunsParams(
            worker_id=worker, now=self.now, horizon=horizon, lease_until=until, limit=limit
        )
        claimed = self.call(self.store.claim_runs(params))
        assert [c.available_at for c in claimed] == available[:limit], "earliest available first"
        for c in claimed:
            was = self.snap.runs[c.run_id]
            assert was.status is RunStatus.QUEUED
            assert (c.attempt, c.interruptions) == (was.attempt, was.interruptions)
            self.beliefs[worker][c.run_id] = c
        ids = [c.run_id for c in claimed]
        if start:
            assert self.call(self.store.mark_started(worker, ids, self.now)) == ids
            self.executed.update(checks.attempt_keys(claimed, self.executed))
        started_at = self.now if start else None

        def check(after: Snapshot) -> None:
            for run_id in ids:
                run = after.runs[run_id]
                assert (run.status, run.worker_id) == (RunStatus.RUNNING, worker)
                assert (run.lease_until, run.started_at) == (until, started_at)

        self.checks.append(check)

    @precondition(lambda self: self._holders())
    @rule(data=st.data())
    def mark_started(self, data: st.DataObject) -> None:
        worker, ids = self._some_held(data)
        snap = self.snap
        expected = [i for i in ids if snap.holds(i, worker) and snap.runs[i].started_at is None]
        started = self.call(self.store.mark_started(worker, ids, self.now))
        assert started == expected
        self.executed.update(checks.attempt_keys([snap.runs[i] for i in started], self.executed))
        self.checks.append(lambda after: checks.started_at(after, started, self.now))

    @precondition(lambda self: self._holders())
    @rule(lease=st.sampled_from([5, 30]), data=st.data())
    def extend_leases(self, lease: int, data: st.DataObject) -> None:
        worker, ids = self._some_held(data)
        until = self._at(lease)
        renewal = self.call(self.store.extend_leases(worker, ids, until))
        held = [i for i in ids if self.snap.holds(i, worker)]
        assert renewal.held == held
        assert renewal.cancel == [i for i in held if self.snap.cancelled(self.snap.runs[i])]
        self.checks.append(lambda after: checks.leased_until(after, held, until))

    @precondition(lambda self: self._holders())
    @rule(
        result=st.sampled_from(["success", "failure", "timeout"]),
        retry_in=st.sampled_from([0, 3]),
        stale=st.sampled_from([None, None, "duplicate", "wrong attempt"]),
        data=st.data(),
    )
    def complete_run(
        self, result: str, retry_in: int, stale: str | None, data: st.DataObject
    ) -> None:
        worker = data.draw(st.sampled_from(self._holders()), label="worker")
        run_id = data.draw(st.sampled_from(list(self.beliefs[worker])), label="run")
        claimed = self.beliefs[worker].pop(run_id)
        left = attempts_left(claimed.attempt, claimed.max_retries, claimed.interruptions)
        status = outcome_status(
            succeeded=result == "success", timed_out=result == "timeout", attempts_left=left
        )
        retry_at = self._at(retry_in) if status is RunStatus.RETRY_SCHEDULED else None
        outcome = checks.outcome_of(claimed, worker, status, self.now, retry_at)
        applies = self.snap.holds(run_id, worker)
        batch = [outcome]
        if stale == "duplicate":
            batch.append(outcome)  # the second outcome for one run in a batch is stale
        elif stale == "wrong attempt":
            batch.insert(0, replace(outcome, attempt=outcome.attempt + 1))
        applied = self.call(self.store.complete_runs(batch))
        expected_applied = {None: [applies], "duplicate": [applies, False]}.get(
            stale, [False, applies]
        )
        assert applied == expected_applied, "compare-and-set on (RUNNING, worker, attempt)"
        if not applies:
            return
        before = self.snap
        expected = status
        if status is RunStatus.RETRY_SCHEDULED and before.cancelled(before.runs[run_id]):
            expected = RunStatus.CANCELLED  # a cancelled job is never retried
        self.checks.append(lambda after: checks.completed(before, after, outcome, expected))

    @rule(
        live=st.one_of(st.none(), st.frozensets(st.sampled_from(WORKERS))),
        limit=st.integers(1, 4),
        retry_in=st.sampled_from([0, 2]),
    )
    def reap_lost(self, live: frozenset[str] | None, limit: int, retry_in: int) -> None:
        lost: dict[str, str] = {}
        for run in self.snap.runs.values():
            if run.status is not RunStatus.RUNNING:
                continue
            assert run.lease_until is not None
            gone = live is not None and run.worker_id not in live
            if gone or run.lease_until < self.now:
                lost[run.run_id] = LOST_TO_MEMBERSHIP if gone else LOST_TO_LEASE
        params = ReapParams(
            now=self.now,
            retry_at=self._at(retry_in),
            max_interruptions=MAX_INTERRUPTIONS,
            live_workers=live,
            limit=limit,
        )
        count = self.call(self.store.reap_lost(params))
        assert count == min(limit, len(lost))
        self._expect_lost(lost, count, params.retry_at)

    @rule(limit=st.integers(1, 4))
    def reap_all(self, limit: int) -> None:
        """Embedded start-up: every RUNNING run belonged to the previous process."""
        lost = {r.run_id: LOST_TO_LEASE for r in self.snap.runs.values() if checks.running(r)}
        params = ReapParams(
            now=self.now,
            retry_at=self.now,
            max_interruptions=MAX_INTERRUPTIONS,
            expire_all=True,
            limit=limit,
        )
        count = self.call(self.store.reap_lost(params))
        assert count == min(limit, len(lost))
        self._expect_lost(lost, count, self.now)

    @precondition(lambda self: self._holders())
    @rule(data=st.data())
    def release_runs(self, data: st.DataObject) -> None:
        worker, ids = self._some_held(data)
        lost = {i: LOST_AT_SHUTDOWN for i in ids if self.snap.holds(i, worker)}
        params = ReleaseParams(
            worker_id=worker, run_ids=ids, now=self.now, max_interruptions=MAX_INTERRUPTIONS
        )
        assert self.call(self.store.release_runs(params)) == len(lost)
        self._expect_lost(lost, len(lost), self.now)

    def _expect_lost(self, lost: dict[str, str], count: int, retry_at: datetime) -> None:
        before, now = self.snap, self.now

        def check(after: Snapshot) -> None:
            held = {r.run_id: r.worker_id or "" for r in before.runs.values() if checks.running(r)}
            ended = [i for i in held if not after.holds(i, held[i])]
            assert set(ended) <= set(lost), "only lost runs are ended"
            assert len(ended) == count, "exactly the runs reported were handled"
            for run_id in ended:
                checks.lost_as_the_rule_says(before, after, run_id, lost[run_id], now, retry_at)

        self.checks.append(check)

    def _holders(self) -> list[str]:
        return [w for w in WORKERS if self.beliefs[w]]

    def _some_held(self, data: st.DataObject) -> tuple[str, list[str]]:
        """A worker, and some runs it believes it holds (some may be lost already)."""
        worker = data.draw(st.sampled_from(self._holders()), label="worker")
        mine = list(self.beliefs[worker])  # claim order: ids are random, replays must not be
        return worker, data.draw(st.lists(st.sampled_from(mine), min_size=1, unique=True))

    def _at(self, seconds: float) -> datetime:
        return self.now + timedelta(seconds=seconds)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def store_is_consistent(self) -> None:
        self.healthy = False
        after = self.call(self._snapshot())
        checks.check_store(self.snap, after, self.claimed_fires)
        expected, self.checks = self.checks, []
        for check in expected:
            check(after)
        self.snap = after
        self.healthy = True

    async def _snapshot(self) -> Snapshot:
        jobs: dict[str, Job] = {}
        runs: dict[str, Run] = {}
        for job_id, job in self.accepted.items():
            found = await self.store.get_job(job.user_id, job_id)
            assert found is not None, f"I7: accepted job {job_id} disappeared"
            jobs[job_id] = found
            listed = await self.store.list_runs(job.user_id, job_id, limit=10_000)
            order = [(r.scheduled_for, r.attempt) for r in listed]
            assert order == sorted(order, reverse=True), "newest fire, newest attempt first"
            runs.update((r.run_id, r) for r in listed)
        return Snapshot(jobs, runs)

    def teardown(self) -> None:
        try:
            if self.healthy:  # a failed step already reported; don't bury it under the drain
                self._drain_and_check()
        finally:
            self.call(self.store.close())
            self.runner.close()
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def _drain_and_check(self) -> None:
        """Drive every claimed fire to an outcome, then check I1 and I7 on what is left."""
        self.store_is_consistent()
        for _ in range(3):
            unfinished = (RunStatus.QUEUED, RunStatus.RUNNING)
            if not any(r.status in unfinished for r in self.snap.runs.values()):
                break
            params = ClaimRunsParams(
                worker_id="drainer",
                now=self.now,
                horizon=self.now + FAR,
                lease_until=self.now + FAR,
                limit=10_000,
            )
            self.call(self.store.claim_runs(params))
            self.store_is_consistent()
            self.call(self._finish_all())
            self.store_is_consistent()
        else:
            raise AssertionError("runs still unfinished after draining")
        checks.check_drained(self.snap, self.claimed_fires)

    async def _finish_all(self) -> None:
        """Every holder completes what it holds, successfully."""
        outcomes = [
            RunOutcome(
                run_id=r.run_id,
                worker_id=r.worker_id or "",
                attempt=r.attempt,
                status=RunStatus.COMPLETED,
                started_at=self.now,
                completed_at=self.now,
                output="drained",
                exit_code=0,
                error_message=None,
            )
            for r in self.snap.runs.values()
            if checks.running(r)
        ]
        assert all(await self.store.complete_runs(outcomes)), "a held run refused its outcome"


class SqliteStoreMachine(StoreMachine):
    kind = "sqlite"


TestMemoryStoreStateful = StoreMachine.TestCase
TestMemoryStoreStateful.settings = SETTINGS
TestSqliteStoreStateful = SqliteStoreMachine.TestCase
TestSqliteStoreStateful.settings = settings(SETTINGS, max_examples=50)
