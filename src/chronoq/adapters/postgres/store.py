"""``PostgresStore``: the Store port over PostgreSQL (asyncpg), for the distributed mode.

Same semantics as ``SqliteStore`` (the reference); what differs is how they
are kept with many processes writing at once:

* Pickers and workers claim with ``FOR NO KEY UPDATE ... SKIP LOCKED``, so
  several of them never claim the same fire or lease the same run, and never
  wait for each other. ``claim_due`` (``picker``) applies ``claims.plan_claim`` to
  each locked due job and writes its runs, ledger skips and next fire in the same
  transaction (DESIGN §5.3, ``fires``). With ``owner``/``epoch``
  it is fenced by the store's OWN record (``fenced_shards``, written by
  ``fence_shards``): it claims only from the shards that record gives the
  owner at that epoch, share-locking those rows for the transaction, so a
  concurrent ``fence_shards`` waits for it (§5.5). No coordination table is read.
* Every other write that decides on a state first locks the rows it reads, in
  a fixed order (jobs by id, then runs by id; see ``sql``), then applies its
  compare-and-set on (status, lease owner, attempt) to what it locked. The
  decisions (CAS, retry or not, the lost-run rule, the job's next status) are
  made in Python by the domain functions (``plans``), and written back in one
  statement with arrays (``unnest``), whatever the batch size.
* ``claim_runs`` leases without starting; ``mark_started`` records the start, so
  ``reap_lost``/``release_runs`` requeue a run that never started without using an
  attempt. Runs of plain jobs start in one statement; runs of gated jobs (an overlap
  policy) or with a start deadline pass ``starts.plan_start`` under their jobs'
  locks (``starts``). Ending a job's running run releases the run buffered behind it
  (``settle.JobStates``).
* Job control (pause, resume, trigger, change, purge) is ``control``; the fire ledger's
  reads and the idempotency keys are ``ledger``.
* Instants are ``timestamptz``; ids are ``uuid`` (``str`` in the domain).
* Text PostgreSQL refuses (NUL, lone surrogates; ``RunOutcome`` cleans outcomes
  before they get here, but nothing else stops a caller) is a ``ValidationError``
  from the driver's refusal, and its whole batch applies nothing: never a wedge.
* ``fence_shards`` waits at most ``picker._FENCE_LOCK_TIMEOUT_MS`` for claims in flight,
  then fails as unavailable, changing nothing (the leader tries again).

Lifecycle: nothing connects before ``start()``, which opens the pool and
applies the migrations; ``close()`` is safe to call twice. Planner statistics keep up
with a young database's growth (``statistics``: jobs inserted and runs ended are
counted; a table that doubled since its last ANALYZE is analyzed in the background). Driver errors
become ``UnavailableError`` / ``ValidationError`` / ``ConflictError``
(``errors.translated``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from chronoq.adapters.postgres import limit_indexes, limits, listing, sql
from chronoq.adapters.postgres.claims import claim_restricted
from chronoq.adapters.postgres.control import PostgresControl
from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.ledger import PURGE_SKIPS, PostgresLedger
from chronoq.adapters.postgres.live import PostgresLive
from chronoq.adapters.postgres.outbox import PostgresOutbox
from chronoq.adapters.postgres.picker import PostgresPicker
from chronoq.adapters.postgres.plans import (
    Completion,
    LockedRun,
    LostRuns,
)
from chronoq.adapters.postgres.pool import PgPool
from chronoq.adapters.postgres.rows import (
    aware,
    claimed_from_record,
    fired_run_args,
    is_id,
    job_args,
    job_from_record,
    run_from_record,
)
from chronoq.adapters.postgres.settle import JobStates
from chronoq.adapters.postgres.starts import START_PLAIN, start_gated
from chronoq.adapters.postgres.statistics import GrowthAnalyzer
from chronoq.adapters.postgres.tokens import PostgresTokens
from chronoq.domain.fire_now import fired_job_ids
from chronoq.domain.jobs import (
    LIST_OUTPUT_CHARS,
    ClaimedRun,
    Job,
    Run,
    RunOutcome,
    check_outcomes,
    output_cut,
)
from chronoq.domain.limits import Deferrals
from chronoq.domain.states import (
    JOB_TERMINAL,
    LOST_AT_SHUTDOWN,
    LOST_TO_LEASE,
    LOST_TO_MEMBERSHIP,
    RunStatus,
)
from chronoq.errors import ValidationError
from chronoq.ports.dispatch import (
    ClaimRunsParams,
    LeaseRenewal,
    ReapParams,
    ReleaseParams,
)
from chronoq.ports.jobs import Backlog, CancelResult, JobPage, ListJobsParams

T = TypeVar("T")

_RUNNING = RunStatus.RUNNING.value


class PostgresStore(
    PostgresPicker, PostgresOutbox, PostgresTokens, PostgresControl, PostgresLedger, PostgresLive
):
    """The distributed Store. ``dsn``: ``postgresql://user:password@host:port/database``."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self._deferrals = Deferrals()
        self._pool = PgPool(
            dsn, owner="the PostgreSQL store", min_size=min_size, max_size=max_size,
            connect_timeout=connect_timeout,
        )  # fmt: skip
        self._statistics = GrowthAnalyzer(self._pool.get)
        self._limit_indexes = limit_indexes.LimitIndexes(self._pool.get)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool and apply the migrations (serialized across starters)."""
        await self._pool.open()

    async def close(self) -> None:
        await self._statistics.close()
        await self._limit_indexes.close()
        await self._pool.close()

    # -- jobs --------------------------------------------------------------------------------

    async def insert_jobs(
        self,
        jobs: Sequence[Job],
        *,
        if_absent: bool = False,
        max_active_per_user: int = 0,
        runs: Sequence[Run] = (),
    ) -> None:
        if not jobs:
            return
        for job in jobs:
            if not is_id(job.job_id):
                raise ValidationError(f"job_id must be a uuid, got {job.job_id!r}", field="job_id")
        args = job_args(jobs, fired_job_ids(jobs, runs, if_absent=if_absent))
        statement = sql.INSERT_JOBS_IF_ABSENT if if_absent else sql.INSERT_JOBS
        if runs:
            statement = sql.INSERT_FIRED_JOBS
            args += fired_run_args(runs)
        if max_active_per_user > 0:
            self._limit_indexes.need(limit_indexes.ACTIVE_JOBS)

            async def limited(conn: Any) -> None:
                await limits.check_active_jobs(conn, jobs, max_active_per_user, if_absent)
                await conn.execute(statement, *args)

            await self._transaction("insert_jobs", limited)
            return
        with translated("insert_jobs"):
            await self._connected().execute(statement, *args)
        self._statistics.wrote(len(jobs))  # a young table outgrowing its plans (statistics)

    async def active_jobs(self, user_id: str) -> int:
        self._limit_indexes.need(limit_indexes.ACTIVE_JOBS)
        with translated("active_jobs"):
            rows = await self._connected().fetch(limits.ACTIVE_COUNTS, [user_id])
        return int(rows[0][1]) if rows else 0

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        if not is_id(job_id):
            return None
        with translated("get_job"):
            row = await self._connected().fetchrow(sql.GET_JOB, job_id, user_id)
        return None if row is None else job_from_record(row)

    async def list_jobs(self, params: ListJobsParams) -> JobPage:
        return await listing.list_jobs(self._connected(), params)

    async def list_runs(
        self, user_id: str, job_id: str, limit: int = 100, *, output_chars: int = LIST_OUTPUT_CHARS
    ) -> list[Run]:
        if not is_id(job_id):
            return []
        with translated("list_runs"):
            rows = await self._connected().fetch(
                sql.LIST_RUNS, job_id, user_id, limit, output_chars + 1
            )
        return [output_cut(run_from_record(r), output_chars) for r in rows]

    async def read_output(
        self, user_id: str, job_id: str, run_id: str, start: int, count: int
    ) -> str | None:
        if not (is_id(job_id) and is_id(run_id)):
            return None
        with translated("read_output"):
            text: str | None = await self._connected().fetchval(
                sql.READ_OUTPUT, run_id, job_id, user_id, start + 1, count
            )
        return text

    async def output_ref(self, user_id: str, job_id: str, run_id: str) -> str | None:
        if not (is_id(job_id) and is_id(run_id)):
            return None
        with translated("output_ref"):
            ref: str | None = await self._connected().fetchval(
                sql.OUTPUT_REF, run_id, job_id, user_id
            )
        return ref

    async def cancel_job(self, user_id: str, job_id: str, now: datetime) -> CancelResult | None:
        now = aware(now, "now")
        if not is_id(job_id):
            return None

        async def body(conn: Any) -> CancelResult | None:
            row = await conn.fetchrow(sql.LOCK_USER_JOB, job_id, user_id)
            if row is None:
                return None
            job = job_from_record(row)
            if job.status in JOB_TERMINAL:
                return CancelResult(job=job, running_run_ids=[])
            row = await conn.fetchrow(sql.CANCEL, job_id, now)
            running = list(row[sql.JOB_WIDTH])
            return CancelResult(job=job_from_record(row), running_run_ids=running)

        return await self._transaction("cancel_job", body)

    # -- workers -----------------------------------------------------------------------------

    async def claim_runs(self, params: ClaimRunsParams) -> list[ClaimedRun]:
        if params.queues is not None or params.limits.any:
            return await self._transaction(
                "claim_runs", lambda conn: claim_restricted(conn, params)
            )
        args = (
            aware(params.horizon, "horizon"),
            params.limit,
            params.worker_id,
            aware(params.lease_until, "lease_until"),
            aware(params.now, "now"),
        )
        with translated("claim_runs"):
            rows = await self._connected().fetch(sql.CLAIM_RUNS, *args)
        return [claimed_from_record(r) for r in rows]

    async def next_available_at(self) -> datetime | None:
        with translated("next_available_at"):
            value = await self._connected().fetchval(sql.NEXT_AVAILABLE)
        return value  # type: ignore[no-any-return]

    async def backlog(self, now: datetime) -> Backlog:
        with translated("backlog"):
            row = await self._connected().fetchrow(sql.BACKLOG, aware(now, "now"))
        return Backlog(due=row[0], oldest_due=row[1], queued=row[2], running=row[3])

    async def mark_started(self, worker_id: str, run_ids: Sequence[str], at: datetime) -> list[str]:
        at = aware(at, "at")
        asked = [r for r in dict.fromkeys(run_ids) if is_id(r)]  # each once, as asked
        if not asked:
            return []
        with translated("mark_started"):
            rows = await self._connected().fetch(START_PLAIN, asked, worker_id, at)
        started = {str(r[0]) for r in rows if r[1]}
        others = {str(r[0]) for r in rows if not r[1]}
        if others:  # runs of gated or deadlined jobs: plan_start under their jobs' locks
            ordered = [r for r in asked if r in others]
            started |= await self._transaction(
                "mark_started", lambda conn: start_gated(conn, worker_id, ordered, at)
            )
        return [r for r in asked if r in started]

    async def extend_leases(
        self, worker_id: str, run_ids: Sequence[str], lease_until: datetime
    ) -> LeaseRenewal:
        until = aware(lease_until, "lease_until")
        ids = list({r for r in run_ids if is_id(r)})
        if not ids:
            return LeaseRenewal(held=[], cancel=[])
        with translated("extend_leases"):
            rows = await self._connected().fetch(sql.EXTEND_LEASES, ids, worker_id, until)
        cancelled = {str(r[0]): bool(r[1]) for r in rows}
        held = [r for r in dict.fromkeys(run_ids) if r in cancelled]  # each once, as asked
        return LeaseRenewal(held=held, cancel=[r for r in held if cancelled[r]])

    async def complete_runs(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        check_outcomes(outcomes)
        ids = list({o.run_id for o in outcomes if is_id(o.run_id)})
        if not ids:
            return [False] * len(outcomes)

        async def body(conn: Any) -> list[bool]:
            jobs = JobStates(await conn.fetch(sql.LOCK_JOBS_OF_RUNS, ids))
            locked = await conn.fetch(sql.LOCK_RUNS, [*ids, *jobs.behind(ids)])
            runs = {str(r[0]): LockedRun(*r[1:]) for r in locked}
            plan = Completion(jobs)
            applied = [plan.add(outcome, runs.get(outcome.run_id)) for outcome in outcomes]
            if any(applied):
                await conn.execute(sql.COMPLETE, *plan.args())
            return applied

        applied = await self._transaction("complete_runs", body)
        self._statistics.wrote(len(ids))  # each ended run was inserted once (statistics)
        return applied

    async def release_runs(self, params: ReleaseParams) -> int:
        now = aware(params.now, "now")
        ids = list({r for r in params.run_ids if is_id(r)})
        if not ids:
            return 0

        async def body(conn: Any) -> int:
            jobs = JobStates(await conn.fetch(sql.LOCK_JOBS_OF_RUNS, ids))
            plan = LostRuns(jobs, now=now, retry_at=now, max_interruptions=params.max_interruptions)
            for row in await conn.fetch(sql.LOCK_RUNS, [*ids, *jobs.behind(ids)]):
                run = LockedRun(*row[1:])
                if run.status == _RUNNING and run.lease_owner == params.worker_id:
                    plan.add(row[0], run, LOST_AT_SHUTDOWN)
            if len(plan):
                await conn.execute(sql.END_LOST, *plan.args())
            return len(plan)

        return await self._transaction("release_runs", body)

    async def reap_lost(self, params: ReapParams) -> int:
        now = aware(params.now, "now")
        retry_at = aware(params.retry_at, "retry_at")
        live = params.live_workers

        async def body(conn: Any) -> int:
            if params.expire_all:
                rows = await conn.fetch(sql.REAP_SELECT_ALL, params.limit)
            elif live is None:
                rows = await conn.fetch(sql.REAP_SELECT_EXPIRED, now, params.limit)
            else:
                rows = await conn.fetch(sql.REAP_SELECT_LOST, now, params.limit, sorted(live))
            if not rows:
                return 0
            jobs = JobStates([r[11:17] for r in rows])
            plan = LostRuns(
                jobs, now=now, retry_at=retry_at, max_interruptions=params.max_interruptions
            )
            for row in rows:
                run = LockedRun(*row[1:11])
                gone = live is not None and run.lease_owner not in live
                plan.add(row[0], run, LOST_TO_MEMBERSHIP if gone else LOST_TO_LEASE)
            await conn.execute(sql.END_LOST, *plan.args())
            return len(plan)

        return await self._transaction("reap_lost", body)

    async def purge_finished(self, before: datetime, limit: int = 1000) -> list[str]:
        cutoff = aware(before, "before")

        async def body(conn: Any) -> list[str]:
            outputs = await conn.fetch(sql.PURGE_RUNS, cutoff, limit)
            rows = await conn.fetch(sql.PURGE_JOBS, cutoff, limit)
            await conn.execute(PURGE_SKIPS, cutoff, limit)
            return [r[0] for r in [*outputs, *rows] if r[0] is not None]

        return await self._transaction("purge_finished", body)

    async def existing_job_ids(self, job_ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(i for i in job_ids if is_id(i)))
        if not ids:
            return set()
        with translated("existing_job_ids"):
            rows = await self._connected().fetch(
                "SELECT job_id::text FROM jobs WHERE job_id = ANY($1::uuid[])", ids
            )
        return {r[0] for r in rows}

    async def payload_refs_of(self, job_ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(i for i in job_ids if is_id(i)))
        if not ids:
            return set()
        with translated("payload_refs_of"):
            rows = await self._connected().fetch(sql.PAYLOAD_REFS_OF, ids)
        return {r[0] for r in rows}

    async def output_refs_of(self, run_ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(i for i in run_ids if is_id(i)))
        if not ids:
            return set()
        with translated("output_refs_of"):
            rows = await self._connected().fetch(sql.OUTPUT_REFS_OF, ids)
        return {r[0] for r in rows}

    # -- plumbing ----------------------------------------------------------------------------

    def _connected(self) -> Any:
        return self._pool.get()

    async def _transaction(self, what: str, body: Callable[[Any], Awaitable[T]]) -> T:
        return await self._pool.transaction(what, body)
