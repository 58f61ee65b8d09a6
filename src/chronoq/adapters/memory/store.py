"""``MemoryStore``: the Store port (JobStore and Dispatch) in memory, for tests.

It behaves as ``SqliteStore`` and ``PostgresStore`` do (the port docstrings
and the contract suites are the spec) and is as strict as their schemas:
``store_tables.Tables`` refuses duplicate keys and a second terminal run of a
fire, and moves every run along ``domain.states.RUN_TRANSITIONS``.

Every method does all its work without awaiting, so each is atomic on the
event loop; each checks what could refuse it before it changes anything, so
one that raises changed nothing. Like a database, the store is unavailable
(``UnavailableError``) before ``start`` and after ``close``; closing keeps
the data, so ``start`` again finds it (a reopened file). Instants are
normalised to UTC on the way in; naive ones are refused (``ValueError``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime

from chronoq.adapters.memory import store_inputs, store_limits, store_policies, store_runs
from chronoq.adapters.memory.store_control import MemoryControl
from chronoq.adapters.memory.store_ledger import MemoryLedger
from chronoq.adapters.memory.store_outbox import MemoryOutbox
from chronoq.adapters.memory.store_rows import JobRow, run_row
from chronoq.adapters.memory.store_tables import Tables
from chronoq.adapters.memory.store_tokens import MemoryTokens
from chronoq.adapters.memory.store_workers import MemoryWorkers
from chronoq.domain.clock import check_aware
from chronoq.domain.fire_now import fired_job_ids, stored_fired
from chronoq.domain.jobs import (
    LIST_OUTPUT_CHARS,
    Job,
    Run,
    output_cut,
)
from chronoq.domain.limits import Deferrals
from chronoq.domain.live_output import RunLive
from chronoq.domain.states import (
    JOB_TERMINAL,
    JobStatus,
    RunStatus,
)
from chronoq.errors import ConflictError, UnavailableError, ValidationError
from chronoq.ports.dispatch import (
    ClaimDueParams,
)
from chronoq.ports.jobs import (
    Backlog,
    CancelResult,
    JobPage,
    ListJobsParams,
    RunBrief,
    cursor_position,
    job_listed,
)

_FINISHED_RUN = frozenset(RunStatus) - {RunStatus.QUEUED, RunStatus.RUNNING}


class MemoryStore(MemoryControl, MemoryLedger, MemoryWorkers, MemoryOutbox, MemoryTokens):
    """The Store port in dictionaries (see the module docstring)."""

    def __init__(self) -> None:
        self._tables = Tables()
        self._open = False
        self._deferrals = Deferrals()

    async def start(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _db(self) -> Tables:
        if not self._open:
            raise UnavailableError("the in-memory store is not started (or closed)")
        return self._tables

    # -- JobStore ------------------------------------------------------------------------------

    async def insert_jobs(
        self,
        jobs: Sequence[Job],
        *,
        if_absent: bool = False,
        max_active_per_user: int = 0,
        runs: Sequence[Run] = (),
    ) -> None:
        fired_ids = fired_job_ids(jobs, runs, if_absent=if_absent)
        db = self._db()
        fresh: dict[str, Job] = {}
        keys: set[tuple[str, str]] = set()
        for job in map(store_inputs.checked_job, jobs):
            key = db.key_of(job)
            taken = key is not None and (key in db.keys or key in keys)
            if job.job_id in db.jobs or job.job_id in fresh or taken:
                if if_absent:
                    continue
                what = "idempotency key" if taken else f"id {job.job_id!r}"
                raise ConflictError(f"a job with this {what} already exists")
            fresh[job.job_id] = job
            if key is not None:
                keys.add(key)
        if max_active_per_user > 0:
            store_limits.check_active_jobs(db, list(fresh.values()), max_active_per_user)
        fired = [run_row(run) for run in runs]
        for job in fresh.values():
            db.add_job(stored_fired(job) if job.job_id in fired_ids else job)
        for row in fired:
            db.add_run(row)

    async def active_jobs(self, user_id: str) -> int:
        jobs = self._db().user_jobs(user_id, 0)
        return sum(1 for _position, job in jobs if job.status not in JOB_TERMINAL)

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        row = self._own(user_id, job_id)
        return None if row is None else row.job

    async def list_jobs(self, params: ListJobsParams) -> JobPage:
        after = cursor_position(params.cursor)
        items: list[tuple[int, Job]] = []
        for position, job in self._db().user_jobs(params.user_id, after):
            if not job_listed(job, params):
                continue
            items.append((position, job))
            if len(items) > params.limit:
                break
        more = len(items) > params.limit
        items = items[: max(params.limit, 0)]
        cursor = str(items[-1][0]) if more and items else None
        jobs = [job for _, job in items]
        return JobPage(items=jobs, next_cursor=cursor, recent_runs=self._recent(jobs, params))

    def _recent(self, jobs: list[Job], params: ListJobsParams) -> dict[str, list[RunBrief]]:
        found: dict[str, list[RunBrief]] = {}
        if params.recent_runs <= 0:
            return found
        for job in jobs:
            row = self._own(params.user_id, job.job_id)
            if row is None or not row.runs:
                continue
            runs = [self._tables.runs[run_id] for run_id in row.runs]
            runs.sort(key=lambda r: (r.scheduled_for, r.attempt), reverse=True)
            found[job.job_id] = [RunBrief.of(r.to_run()) for r in runs[: params.recent_runs]]
        return found

    async def list_runs(
        self, user_id: str, job_id: str, limit: int = 100, *, output_chars: int = LIST_OUTPUT_CHARS
    ) -> list[Run]:
        row = self._own(user_id, job_id)
        if row is None:
            return []
        runs = [self._tables.runs[run_id] for run_id in row.runs]
        runs.sort(key=lambda r: (r.scheduled_for, r.attempt), reverse=True)
        return [output_cut(r.to_run(), output_chars) for r in runs[: max(limit, 0)]]

    async def read_output(
        self, user_id: str, job_id: str, run_id: str, start: int, count: int
    ) -> str | None:
        row = self._own(user_id, job_id)
        if row is None or run_id not in row.runs:
            return None
        output = self._tables.runs[run_id].output or ""
        return output[start : start + count]

    async def output_ref(self, user_id: str, job_id: str, run_id: str) -> str | None:
        row = self._own(user_id, job_id)
        if row is None or run_id not in row.runs:
            return None
        return self._tables.runs[run_id].output_ref

    async def live_output(self, user_id: str, run_id: str, *, after: int = -1) -> RunLive | None:
        run = self._db().runs.get(run_id)
        if run is None or self._own(user_id, run.job_id) is None:
            return None
        output = self._tables.live.get(run_id)
        return RunLive(
            run_id=run.run_id,
            job_id=run.job_id,
            attempt=run.attempt,
            status=run.status,
            exit_code=run.exit_code,
            error_message=run.error_message,
            output=output if output is not None and output.end > after else None,
        )

    async def cancel_job(self, user_id: str, job_id: str, now: datetime) -> CancelResult | None:
        now = check_aware(now, "now")
        row = self._own(user_id, job_id)
        if row is None:
            return None
        if row.job.status in JOB_TERMINAL:
            return CancelResult(job=row.job, running_run_ids=[])
        db = self._tables
        db.update_job(
            row, status=JobStatus.CANCELLED, next_fire_at=None, paused_fire_at=None, updated_at=now
        )
        running: list[str] = []
        for run in [db.runs[run_id] for run_id in row.runs]:
            if run.status is RunStatus.QUEUED:
                db.move(run, RunStatus.CANCELLED)
                run.completed_at = now
                run.error_message = store_runs.CANCELLED_BY_USER
            elif run.status is RunStatus.RUNNING:
                run.cancel_requested = True  # the worker learns it at its next renewal
                running.append(run.run_id)
        return CancelResult(job=row.job, running_run_ids=sorted(running))

    async def backlog(self, now: datetime) -> Backlog:
        now = check_aware(now, "now")
        db = self._db()
        due = [j.next_fire_at for j in db.due_jobs() if j.next_fire_at and j.next_fire_at <= now]
        return Backlog(
            due=len(due),
            oldest_due=min(due, default=None),
            queued=sum(1 for run in db.queued() if run.available_at <= now),
            running=len(db.running),
        )

    async def purge_finished(self, before: datetime, limit: int = 1000) -> list[str]:
        before = check_aware(before, "before")
        db = self._db()
        old_runs = (
            r.run_id
            for r in db.runs.values()
            if r.status in _FINISHED_RUN and r.completed_at is not None and r.completed_at < before
        )
        refs: list[str] = []
        for run_id in list(itertools.islice(old_runs, max(limit, 0))):
            ref = db.runs[run_id].output_ref
            if ref is not None:
                refs.append(ref)
            db.delete_run(run_id)
        old_jobs = (
            row.job.job_id
            for row in db.jobs.values()
            if row.job.status in JOB_TERMINAL and row.job.updated_at < before and not row.runs
        )
        gone = [db.delete_job(job_id) for job_id in list(itertools.islice(old_jobs, limit))]
        db.skips.purge_before(before)
        return refs + [job.payload_ref for job in gone if job.payload_ref is not None]

    async def existing_job_ids(self, job_ids: Sequence[str]) -> set[str]:
        jobs = self._db().jobs
        return {job_id for job_id in job_ids if job_id in jobs}

    async def payload_refs_of(self, job_ids: Sequence[str]) -> set[str]:
        jobs = self._db().jobs
        refs = (jobs[i].job.payload_ref for i in job_ids if i in jobs)
        return {ref for ref in refs if ref is not None}

    async def output_refs_of(self, run_ids: Sequence[str]) -> set[str]:
        runs = self._db().runs
        refs = (runs[i].output_ref for i in run_ids if i in runs)
        return {ref for ref in refs if ref is not None}

    def _own(self, user_id: str, job_id: str) -> JobRow | None:
        row = self._db().jobs.get(job_id)
        return row if row is not None and row.job.user_id == user_id else None

    # -- Dispatch: pickers ---------------------------------------------------------------------

    async def fence_shards(self, epoch: int, owners: Mapping[int, str]) -> bool:
        for shard, owner in owners.items():
            if not isinstance(shard, int) or shard < 0:
                raise ValidationError(f"shard ids are ints >= 0, got {shard!r}", field="owners")
            if not isinstance(owner, str) or not owner:
                raise ValidationError(
                    f"owners are non-empty strings, got {owner!r}", field="owners"
                )
        db = self._db()
        if epoch <= db.fence_epoch:
            return False  # a deposed leader's late write
        db.fence_epoch = epoch
        db.fence_owners = dict(owners)
        return True

    async def claim_due(self, params: ClaimDueParams) -> list[Run]:
        now = check_aware(params.now, "now")
        horizon = check_aware(params.horizon, "horizon")
        db = self._db()
        shards = self._claimable_shards(params)
        if shards is not None and not shards:
            return []
        if params.max_fires_per_minute > 0:
            return store_limits.claim_fairly(db, params, shards, now, horizon, self._deferrals)
        taken = db.take_due(shards, horizon, params.limit)
        try:  # everything that can refuse, before the first write
            plans = [(row, store_policies.plan_due(db, row, now)) for row in taken]
        except BaseException:
            db.untake_due(taken)
            raise
        runs: list[Run] = []
        for row, plan in plans:
            runs.extend(store_policies.apply_claim(db, row, plan, now))
        return runs

    def _claimable_shards(self, params: ClaimDueParams) -> set[int] | None:
        """The shards a claim may take from (None: all); fenced claims only their own."""
        wanted = None if params.shards is None else set(params.shards)
        if params.owner is None:
            return wanted
        db = self._tables
        if params.epoch is None or params.epoch != db.fence_epoch:
            return set()
        owned = {shard for shard, owner in db.fence_owners.items() if owner == params.owner}
        return owned if wanted is None else owned & wanted

    async def next_due_at(self, shards: Sequence[int] | None) -> datetime | None:
        return self._db().next_due_at(shards)

    # -- test support --------------------------------------------------------------------------

    def insert_raw_run(self, run: Run) -> None:
        """Write a run row behind the store's back, checked only as a schema would check it.

        For contract tests that show the constraints themselves refuse what the store
        must never do: raises ``store_tables.IntegrityError`` for a duplicate
        ``(job_id, scheduled_for, attempt)`` or a second terminal run of a fire.
        """
        self._db().add_run(run_row(run))
