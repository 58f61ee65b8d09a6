"""``PostgresStore``: the Store port over PostgreSQL (asyncpg), for the distributed mode.

Same semantics as ``SqliteStore`` (the reference); what differs is how they
are kept with many processes writing at once:

* Pickers and workers claim with ``FOR NO KEY UPDATE ... SKIP LOCKED``, so
  several of them never claim the same fire or lease the same run, and never
  wait for each other. ``claim_due`` inserts the runs and advances the jobs'
  next fires in the same transaction (DESIGN §5.3).
* Every other write that decides on a state first locks the rows it reads, in
  a fixed order (jobs by id, then runs by id; see ``sql``), then applies its
  compare-and-set on (status, lease owner, attempt) to what it locked. The
  decisions (CAS, retry or not, the job's next status) are made in Python by
  the domain functions, exactly as the embedded store makes them, and written
  back in one statement per step with arrays (``unnest``), whatever the batch.
* Instants are ``timestamptz``; ids are ``uuid`` (``str`` in the domain).

Lifecycle: nothing connects before ``start()``, which opens the pool and
applies the migrations; ``close()`` is safe to call twice. Driver errors
become ``UnavailableError`` / ``ValidationError`` / ``ConflictError``
(``errors.translated``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from chronoq.adapters.postgres import sql
from chronoq.adapters.postgres.driver import asyncpg
from chronoq.adapters.postgres.errors import TRANSIENT, translated
from chronoq.adapters.postgres.migrations import apply_migrations
from chronoq.adapters.postgres.rows import (
    aware,
    claimed_from_record,
    is_id,
    job_args,
    job_from_record,
    run_from_record,
)
from chronoq.domain.fires import next_fire
from chronoq.domain.jobs import ClaimedRun, Job, Run, RunOutcome
from chronoq.domain.retry import attempts_left_after_lost_lease
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus, job_status_after_run
from chronoq.errors import UnavailableError, ValidationError
from chronoq.ports.store import (
    CancelResult,
    ClaimDueParams,
    ClaimRunsParams,
    JobPage,
    ListJobsParams,
    ReapParams,
)

T = TypeVar("T")

_TX_ATTEMPTS = 3
"""Runs of a transaction that PostgreSQL aborted as a deadlock or serialization failure."""
_CLOSE_TIMEOUT = 10.0
_LEASE_LOST = "lease expired: the worker stopped heartbeating"
_TERMINAL_JOB = frozenset(s.value for s in JOB_TERMINAL)
_RUNNING = RunStatus.RUNNING.value


class PostgresStore:
    """The distributed Store. ``dsn``: ``postgresql://user:password@host:port/database``."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._pool: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool and apply the migrations (serialized across starters)."""
        if self._pool is not None:
            return
        with translated("connecting to PostgreSQL"):
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
            )
        try:
            with translated("migrating PostgreSQL"):
                async with pool.acquire() as conn:
                    await apply_migrations(conn)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT)
        except (TimeoutError, OSError, asyncpg.InterfaceError):
            pool.terminate()

    # -- jobs --------------------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        for job in jobs:
            if not is_id(job.job_id):
                raise ValidationError(f"job_id must be a uuid, got {job.job_id!r}", field="job_id")
        args = job_args(jobs)
        with translated("insert_jobs"):
            await self._connected().execute(sql.INSERT_JOBS, *args)

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        if not is_id(job_id):
            return None
        with translated("get_job"):
            row = await self._connected().fetchrow(sql.GET_JOB, job_id, user_id)
        return None if row is None else job_from_record(row)

    async def list_jobs(self, params: ListJobsParams) -> JobPage:
        after = _decode_cursor(params.cursor)
        status = None if params.status is None else params.status.value
        with translated("list_jobs"):
            rows = await self._connected().fetch(
                sql.LIST_JOBS, params.user_id, after, status, params.project_id, params.limit + 1
            )
        more = len(rows) > params.limit
        rows = rows[: params.limit]
        cursor = str(rows[-1][0]) if more and rows else None
        return JobPage(items=[job_from_record(r, 1) for r in rows], next_cursor=cursor)

    async def list_runs(self, user_id: str, job_id: str, limit: int = 100) -> list[Run]:
        if not is_id(job_id):
            return []
        with translated("list_runs"):
            rows = await self._connected().fetch(sql.LIST_RUNS, job_id, user_id, limit)
        return [run_from_record(r) for r in rows]

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
            return CancelResult(job=job_from_record(row), running_run_ids=list(row[15]))

        return await self._transaction("cancel_job", body)

    # -- the picker --------------------------------------------------------------------------

    async def claim_due(self, params: ClaimDueParams) -> list[Run]:
        now = aware(params.now, "now")
        horizon = aware(params.horizon, "horizon")

        async def body(conn: Any) -> list[Run]:
            if params.shards is None:
                rows = await conn.fetch(sql.CLAIM_DUE_ALL, horizon, params.limit)
            else:
                rows = await conn.fetch(
                    sql.CLAIM_DUE_SHARDS, horizon, params.limit, list(params.shards)
                )
            if not rows:
                return []
            fires = _Fires(now)
            for job_id, user_id, cron, tz, due in rows:
                fires.add(job_id, user_id, due, next_fire(
                    cron_schedule=cron, timezone=tz, scheduled_for=due, now=now
                ))  # fmt: skip
            await conn.execute(sql.FIRE, *fires.args())
            return fires.runs

        return await self._transaction("claim_due", body)

    async def next_due_at(self, shards: Sequence[int] | None) -> datetime | None:
        with translated("next_due_at"):
            if shards is None:
                value = await self._connected().fetchval(sql.NEXT_DUE_ALL)
            else:
                value = await self._connected().fetchval(sql.NEXT_DUE_SHARDS, list(shards))
        return value  # type: ignore[no-any-return]

    # -- workers -----------------------------------------------------------------------------

    async def claim_runs(self, params: ClaimRunsParams) -> list[ClaimedRun]:
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

    async def complete_runs(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        ids = list({o.run_id for o in outcomes if is_id(o.run_id)})
        if not ids:
            return [False] * len(outcomes)

        async def body(conn: Any) -> list[bool]:
            jobs = _JobStates(await conn.fetch(sql.LOCK_JOBS_OF_RUNS, ids))
            runs = {str(r[0]): _LockedRun(*r[1:]) for r in await conn.fetch(sql.LOCK_RUNS, ids)}
            plan = _Completion(jobs)
            applied = [plan.add(outcome, runs.get(outcome.run_id)) for outcome in outcomes]
            if any(applied):
                await conn.execute(sql.COMPLETE, *plan.args())
            return applied

        return await self._transaction("complete_runs", body)

    async def extend_leases(
        self, worker_id: str, run_ids: Sequence[str], lease_until: datetime
    ) -> list[str]:
        until = aware(lease_until, "lease_until")
        ids = list({r for r in run_ids if is_id(r)})
        if not ids:
            return []
        with translated("extend_leases"):
            rows = await self._connected().fetch(sql.EXTEND_LEASES, ids, worker_id, until)
        held = {str(r[0]) for r in rows}
        return [r for r in run_ids if r in held]

    async def release_runs(self, worker_id: str, run_ids: Sequence[str]) -> int:
        ids = list({r for r in run_ids if is_id(r)})
        if not ids:
            return 0

        async def body(conn: Any) -> int:
            await conn.execute(sql.LOCK_JOBS_OF_RUNS, ids)
            return int(await conn.fetchval(sql.RELEASE_RUNS, ids, worker_id))

        return await self._transaction("release_runs", body)

    async def reap_expired(self, params: ReapParams) -> int:
        now = aware(params.now, "now")
        retry_at = aware(params.retry_at, "retry_at")

        async def body(conn: Any) -> int:
            if params.expire_all:
                rows = await conn.fetch(sql.REAP_SELECT_ALL, params.limit)
            else:
                rows = await conn.fetch(sql.REAP_SELECT_EXPIRED, now, params.limit)
            if not rows:
                return 0
            reaping = _Reaping(rows)
            await conn.execute(sql.REAP, *reaping.args(now, _LEASE_LOST, retry_at))
            return len(rows)

        return await self._transaction("reap_expired", body)

    # -- plumbing ----------------------------------------------------------------------------

    def _connected(self) -> Any:
        if self._pool is None:
            raise UnavailableError("the PostgreSQL store is not started")
        return self._pool

    async def _transaction(self, what: str, body: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``body(conn)`` in a transaction, again if PostgreSQL aborted it as transient."""
        with translated(what):
            for attempt in range(1, _TX_ATTEMPTS + 1):
                try:
                    async with self._connected().acquire() as conn, conn.transaction():
                        return await body(conn)
                except TRANSIENT:
                    if attempt == _TX_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")


def _decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise ValidationError(f"invalid cursor {cursor!r}", field="cursor")
    return int(cursor)


# -- decisions on locked rows (pure; they build the array arguments) ---------------------------


@dataclass(slots=True)
class _Fires:
    """The runs ``claim_due`` creates and the next fires it sets (``sql.FIRE``)."""

    now: datetime
    runs: list[Run] = field(default_factory=list)
    _job_ids: list[Any] = field(default_factory=list)
    _following: list[datetime | None] = field(default_factory=list)

    def add(self, job_id: Any, user_id: str, due: datetime, following: datetime | None) -> None:
        self._job_ids.append(job_id)
        self._following.append(following)
        self.runs.append(
            Run(
                run_id=str(uuid.uuid4()),
                job_id=str(job_id),
                user_id=user_id,
                scheduled_for=due,
                attempt=1,
                status=RunStatus.QUEUED,
                triggered_at=self.now,
                available_at=due,
            )
        )

    def args(self) -> tuple[Any, ...]:
        return (
            [r.run_id for r in self.runs],
            self._job_ids,
            [r.user_id for r in self.runs],
            [r.scheduled_for for r in self.runs],
            self.now,
            self._following,
        )


@dataclass(slots=True)
class _LockedRun:
    job_id: Any
    user_id: str
    scheduled_for: datetime
    attempt: int
    status: str
    lease_owner: str | None


class _JobStates:
    """The locked jobs' statuses as the writes of a batch move them, one after another.

    Mirrors the embedded store, which settles each job once per run, in order,
    and never moves a job out of a terminal state.
    """

    def __init__(self, rows: Sequence[Any]) -> None:
        self.status: dict[str, str] = {}
        self.recurring: dict[str, bool] = {}
        for job_id, status, recurring in rows:
            self.status.setdefault(str(job_id), status)
            self.recurring.setdefault(str(job_id), recurring)
        self._changed: dict[str, datetime | None] = {}

    def settle(self, job_id: str, run_status: RunStatus, at: datetime | None = None) -> None:
        if self.status[job_id] in _TERMINAL_JOB:
            return
        new = job_status_after_run(run_status, recurring=self.recurring[job_id])
        self.status[job_id] = new.value
        self._changed[job_id] = at

    def changes(self) -> tuple[list[str], list[str], list[datetime | None]]:
        ids = list(self._changed)
        return ids, [self.status[i] for i in ids], [self._changed[i] for i in ids]


class _Completion:
    """Compare-and-set of outcomes against locked runs, in order (``sql.COMPLETE``)."""

    def __init__(self, jobs: _JobStates) -> None:
        self._jobs = jobs
        self._ended: list[tuple[Any, ...]] = []
        self._retries: list[tuple[Any, ...]] = []

    def add(self, outcome: RunOutcome, run: _LockedRun | None) -> bool:
        if (
            run is None
            or run.status != _RUNNING
            or run.lease_owner != outcome.worker_id
            or run.attempt != outcome.attempt
        ):
            return False
        job_id = str(run.job_id)
        status = outcome.status
        if self._jobs.status[job_id] == JobStatus.CANCELLED and status is RunStatus.RETRY_SCHEDULED:
            status = RunStatus.CANCELLED
        run.status = status.value  # a second outcome for the same run in this batch is stale
        completed = aware(outcome.completed_at, "completed_at")
        self._ended.append((
            outcome.run_id, status.value, aware(outcome.started_at, "started_at"), completed,
            outcome.output, outcome.exit_code, outcome.error_message,
        ))  # fmt: skip
        if status is RunStatus.RETRY_SCHEDULED:
            retry_at = completed if outcome.retry_at is None else aware(outcome.retry_at)
            self._retries.append((
                str(uuid.uuid4()), run.job_id, run.user_id, run.scheduled_for,
                outcome.attempt + 1, completed, retry_at,
            ))  # fmt: skip
        self._jobs.settle(job_id, status, completed)
        return True

    def args(self) -> list[Any]:
        return [*_columns(self._ended, 7), *_columns(self._retries, 7), *self._jobs.changes()]


class _Reaping:
    """The reaper's decisions for the expired runs it locked (``sql.REAP``)."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self._jobs = _JobStates([(r[1], r[6], r[7]) for r in rows])
        self._ended: list[tuple[Any, ...]] = []
        self._retries: list[tuple[Any, ...]] = []
        for run_id, job_id, user_id, scheduled_for, attempt, max_retries, job_status, _ in rows:
            if job_status == JobStatus.CANCELLED:
                status = RunStatus.CANCELLED
            elif attempts_left_after_lost_lease(attempt, max_retries):
                status = RunStatus.RETRY_SCHEDULED
                retry = (str(uuid.uuid4()), job_id, user_id, scheduled_for, attempt + 1)
                self._retries.append(retry)
            else:
                status = RunStatus.DEAD
            self._ended.append((run_id, status.value))
            self._jobs.settle(str(job_id), status)

    def args(self, now: datetime, error: str, retry_at: datetime) -> list[Any]:
        job_ids, statuses, _ = self._jobs.changes()
        ended = _columns(self._ended, 2)
        return [*ended, now, error, retry_at, *_columns(self._retries, 5), job_ids, statuses]


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows -> one list per column (``unnest``'s arguments); ``width`` for empty input."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
