"""``SqliteStore``: the JobStore and the Dispatch over SQLite (WAL), for the embedded mode.

All operations run on one writer thread (``SqliteThread``) that group-commits:
every call is one savepoint inside the thread's current transaction, so it
applies whole or not at all, and thousands of calls a second cost a few
commits. The transactions themselves are plain functions of the connection:
``jobs`` (the JobStore side), ``control`` (pause, resume, trigger, change, purge,
idempotency keys), ``ledger`` (the fire ledger's skips), ``dispatch`` (fencing, leases,
outcomes), ``claim`` and ``start`` (the schedule policies at claim and at start),
``settle`` (a job after its run ends) and ``lost`` (the lost-run rule). Compare-and-set writes check
(status, lease owner, attempt); instants are stored as epoch microseconds.

Fencing: the store keeps its own record of the newest shard assignment
(``fence_shards``). One thread runs every transaction in turn, so a fenced
``claim_due`` never straddles two epochs.

Driver errors: a duplicate job id (or a user's idempotency key taken) is
``ConflictError``; text SQLite cannot store (lone surrogates, over SQLite's length
limit) is ``ValidationError`` and fails that call alone; a failing commit is
``UnavailableError``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from chronoq.adapters.sqlite import claim as claim_tx
from chronoq.adapters.sqlite import control as control_tx
from chronoq.adapters.sqlite import dispatch as dispatch_tx
from chronoq.adapters.sqlite import jobs as jobs_tx
from chronoq.adapters.sqlite import ledger as ledger_tx
from chronoq.adapters.sqlite import limits as limits_tx
from chronoq.adapters.sqlite import listing
from chronoq.adapters.sqlite import live as live_tx
from chronoq.adapters.sqlite import lost as lost_tx
from chronoq.adapters.sqlite import outcomes as outcomes_tx
from chronoq.adapters.sqlite import start as start_tx
from chronoq.adapters.sqlite.migrations import migrate
from chronoq.adapters.sqlite.thread import SqliteThread
from chronoq.adapters.sqlite.tokens import SqliteTokens
from chronoq.domain.clock import from_micros, to_micros
from chronoq.domain.fire_now import fired_job_ids
from chronoq.domain.jobs import (
    LIST_OUTPUT_CHARS,
    ClaimedRun,
    Fire,
    Job,
    JobChanges,
    Run,
    RunOutcome,
    check_outcomes,
)
from chronoq.domain.limits import Deferrals
from chronoq.domain.live_output import LiveOutput, RunLive
from chronoq.domain.policies import SkipReason
from chronoq.errors import ValidationError
from chronoq.ports.dispatch import (
    ClaimDueParams,
    ClaimRunsParams,
    LeaseRenewal,
    ReapParams,
    ReleaseParams,
)
from chronoq.ports.jobs import (
    Backlog,
    CancelResult,
    JobPage,
    ListFiresParams,
    ListJobsParams,
    PurgeResult,
    cursor_position,
)

T = TypeVar("T")


class SqliteStore(SqliteTokens):
    """The embedded ``Store``. ``path`` is the database file (created if missing)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self._thread = SqliteThread(path, synchronous=synchronous)
        self._deferrals = Deferrals()
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        self._thread.start()
        self._started = True
        await self._thread.run(migrate)

    async def close(self) -> None:
        if self._started:
            self._started = False
            self._thread.stop()

    async def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run one transaction on the store thread; bad text becomes ValidationError."""
        try:
            return await self._thread.run(operation)
        except UnicodeEncodeError as exc:  # a lone surrogate: not UTF-8, not storable
            raise ValidationError(f"text the store cannot hold: {exc.reason}") from None
        except sqlite3.DataError as exc:  # e.g. a string over SQLite's length limit
            raise ValidationError(f"a value the store cannot hold: {exc}") from None

    # -- JobStore ----------------------------------------------------------------------------

    async def insert_jobs(
        self,
        jobs: Sequence[Job],
        *,
        if_absent: bool = False,
        max_active_per_user: int = 0,
        runs: Sequence[Run] = (),
    ) -> None:
        fired_ids = fired_job_ids(jobs, runs, if_absent=if_absent)
        rows = [jobs_tx.job_row(job, job.job_id in fired_ids) for job in jobs]
        fired = [jobs_tx.fired_run_row(run) for run in runs]

        def insert(c: sqlite3.Connection) -> None:
            if max_active_per_user > 0:
                limits_tx.check_active_jobs(c, jobs, max_active_per_user, if_absent)
            jobs_tx.insert_jobs(c, rows, if_absent)
            if fired:
                jobs_tx.insert_fired_runs(c, fired)

        await self._run(insert)

    async def active_jobs(self, user_id: str) -> int:
        return await self._run(lambda c: limits_tx.active_jobs(c, user_id))

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        return await self._run(lambda c: jobs_tx.get_job(c, user_id, job_id))

    async def list_jobs(self, params: ListJobsParams) -> JobPage:
        after = cursor_position(params.cursor)
        return await self._run(lambda c: listing.list_jobs(c, params, after))

    async def list_runs(
        self, user_id: str, job_id: str, limit: int = 100, *, output_chars: int = LIST_OUTPUT_CHARS
    ) -> list[Run]:
        return await self._run(lambda c: jobs_tx.list_runs(c, user_id, job_id, limit, output_chars))

    async def read_output(
        self, user_id: str, job_id: str, run_id: str, start: int, count: int
    ) -> str | None:
        return await self._run(
            lambda c: jobs_tx.read_output(c, user_id, job_id, run_id, start, count)
        )

    async def output_ref(self, user_id: str, job_id: str, run_id: str) -> str | None:
        return await self._run(lambda c: jobs_tx.output_ref(c, user_id, job_id, run_id))

    async def live_output(self, user_id: str, run_id: str, *, after: int = -1) -> RunLive | None:
        return await self._run(lambda c: live_tx.live_output(c, user_id, run_id, after))

    async def cancel_job(self, user_id: str, job_id: str, now: datetime) -> CancelResult | None:
        now_us = to_micros(now)
        return await self._run(lambda c: jobs_tx.cancel_job(c, user_id, job_id, now_us))

    async def backlog(self, now: datetime) -> Backlog:
        now_us = to_micros(now)
        return await self._run(lambda c: jobs_tx.backlog(c, now_us))

    async def purge_finished(self, before: datetime, limit: int = 1000) -> list[str]:
        cutoff = to_micros(before)
        return await self._run(lambda c: jobs_tx.purge_finished(c, cutoff, limit))

    # -- JobStore: job control, the fire ledger, idempotency keys ---------------------------

    async def pause_job(self, user_id: str, job_id: str, now: datetime) -> Job | None:
        now_us = to_micros(now)
        return await self._run(lambda c: control_tx.pause_job(c, user_id, job_id, now_us))

    async def resume_job(
        self, user_id: str, job_id: str, now: datetime, *, catch_up: bool
    ) -> Job | None:
        return await self._run(lambda c: control_tx.resume_job(c, user_id, job_id, now, catch_up))

    async def trigger_job(
        self, user_id: str, job_id: str, now: datetime, *, max_fires_per_minute: int = 0
    ) -> Run | None:
        return await self._run(
            lambda c: control_tx.trigger_job(c, user_id, job_id, now, max_fires_per_minute)
        )

    async def update_job(
        self, user_id: str, job_id: str, changes: JobChanges, now: datetime
    ) -> tuple[Job, str | None] | None:
        return await self._run(lambda c: control_tx.update_job(c, user_id, job_id, changes, now))

    async def purge_job(self, user_id: str, job_id: str) -> PurgeResult | None:
        return await self._run(lambda c: control_tx.purge_job(c, user_id, job_id))

    async def list_fires(self, params: ListFiresParams) -> list[Fire] | None:
        return await self._run(lambda c: ledger_tx.list_fires(c, params))

    async def skip_counts(self) -> dict[SkipReason, int]:
        return await self._run(ledger_tx.skip_counts)

    async def job_by_idempotency_key(self, user_id: str, key: str) -> Job | None:
        return await self._run(lambda c: control_tx.job_by_idempotency_key(c, user_id, key))

    async def forget_idempotency_keys(self, before: datetime, limit: int = 1000) -> int:
        before_us = to_micros(before)
        return await self._run(lambda c: control_tx.forget_idempotency_keys(c, before_us, limit))

    async def existing_job_ids(self, job_ids: Sequence[str]) -> set[str]:
        ids = json.dumps(list(dict.fromkeys(job_ids)))
        query = "SELECT job_id FROM jobs WHERE job_id IN (SELECT value FROM json_each(?))"
        return await self._run(lambda c: {r[0] for r in c.execute(query, (ids,))})

    async def payload_refs_of(self, job_ids: Sequence[str]) -> set[str]:
        ids = json.dumps(list(dict.fromkeys(job_ids)))
        query = (
            "SELECT payload_ref FROM jobs WHERE payload_ref IS NOT NULL"
            " AND job_id IN (SELECT value FROM json_each(?))"
        )
        return await self._run(lambda c: {r[0] for r in c.execute(query, (ids,))})

    async def output_refs_of(self, run_ids: Sequence[str]) -> set[str]:
        ids = json.dumps(list(dict.fromkeys(run_ids)))
        query = (
            "SELECT output_ref FROM job_runs WHERE output_ref IS NOT NULL"
            " AND run_id IN (SELECT value FROM json_each(?))"
        )
        return await self._run(lambda c: {r[0] for r in c.execute(query, (ids,))})

    # -- Dispatch: pickers -------------------------------------------------------------------

    async def fence_shards(self, epoch: int, owners: Mapping[int, str]) -> bool:
        owners = dict(owners)  # a snapshot: the caller may change its mapping meanwhile
        return await self._run(lambda c: dispatch_tx.fence_shards(c, epoch, owners))

    async def claim_due(self, params: ClaimDueParams) -> list[Run]:
        return await self._run(lambda c: claim_tx.claim_due(c, params, self._deferrals))

    async def next_due_at(self, shards: Sequence[int] | None) -> datetime | None:
        if shards is None:
            sql, args = "SELECT min(next_fire_at) FROM jobs WHERE next_fire_at IS NOT NULL", []
        else:
            args = list(shards)
            sql = (
                f"SELECT min(next_fire_at) FROM jobs WHERE shard_id IN ({dispatch_tx.marks(args)})"
            )
        value = await self._run(lambda c: c.execute(sql, args).fetchone()[0])
        return None if value is None else from_micros(value)

    # -- Dispatch: workers -------------------------------------------------------------------

    async def claim_runs(self, params: ClaimRunsParams) -> list[ClaimedRun]:
        return await self._run(lambda c: dispatch_tx.claim_runs(c, params))

    async def next_available_at(self) -> datetime | None:
        sql = "SELECT min(available_at) FROM job_runs WHERE status = 'QUEUED'"
        value = await self._run(lambda c: c.execute(sql).fetchone()[0])
        return None if value is None else from_micros(value)

    async def mark_started(self, worker_id: str, run_ids: Sequence[str], at: datetime) -> list[str]:
        at_us, ids = to_micros(at), list(run_ids)
        if not ids:
            return []
        return await self._run(lambda c: start_tx.mark_started(c, worker_id, ids, at_us))

    async def extend_leases(
        self, worker_id: str, run_ids: Sequence[str], lease_until: datetime
    ) -> LeaseRenewal:
        until, ids = to_micros(lease_until), list(run_ids)
        if not ids:
            return LeaseRenewal(held=[], cancel=[])
        return await self._run(lambda c: dispatch_tx.extend_leases(c, worker_id, ids, until))

    async def put_live_outputs(self, worker_id: str, outputs: Sequence[LiveOutput]) -> list[bool]:
        batch = list(outputs)
        if not batch:
            return []
        return await self._run(lambda c: live_tx.put_live_outputs(c, worker_id, batch))

    async def complete_runs(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        batch = list(outcomes)
        check_outcomes(batch)
        return await self._run(lambda c: _complete(c, batch))

    async def release_runs(self, params: ReleaseParams) -> int:
        if not params.run_ids:
            return 0
        return await self._run(lambda c: lost_tx.release_runs(c, params))

    async def reap_lost(self, params: ReapParams) -> int:
        return await self._run(lambda c: lost_tx.reap_lost(c, params))


def _complete(conn: sqlite3.Connection, batch: list[RunOutcome]) -> list[bool]:
    """The outcomes, then the ended runs' live output windows dropped (one check a batch)."""
    applied = outcomes_tx.complete_runs(conn, batch)
    live_tx.forget_live(conn, [o.run_id for o, ok in zip(batch, applied, strict=True) if ok])
    return applied
