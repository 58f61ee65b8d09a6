"""``MemoryStore``'s worker side of the Dispatch port: lease runs, start them (through
``store_policies``), renew leases, record outcomes, and end lost or handed-back runs.

A mixin over ``MemoryStore._db``; each method is atomic on the event loop (no await).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from chronoq.adapters.memory import store_inputs, store_policies, store_runs
from chronoq.adapters.memory.store_rows import RunRow
from chronoq.adapters.memory.store_tables import Tables
from chronoq.domain.clock import check_aware
from chronoq.domain.jobs import ClaimedRun, RunOutcome, check_outcomes
from chronoq.domain.live_output import LiveOutput
from chronoq.domain.queues import Slots
from chronoq.domain.states import (
    LOST_AT_SHUTDOWN,
    LOST_TO_LEASE,
    LOST_TO_MEMBERSHIP,
    JobStatus,
    RunStatus,
)
from chronoq.ports.dispatch import ClaimRunsParams, LeaseRenewal, ReapParams, ReleaseParams


class MemoryWorkers:
    """Mixed into ``MemoryStore`` (which provides ``_db``)."""

    def _db(self) -> Tables:
        raise NotImplementedError

    async def claim_runs(self, params: ClaimRunsParams) -> list[ClaimedRun]:
        now = check_aware(params.now, "now")
        horizon = check_aware(params.horizon, "horizon")
        until = check_aware(params.lease_until, "lease_until")
        db = self._db()
        claimed: list[ClaimedRun] = []
        slots = None
        if params.limits.any:  # this call runs alone on the loop: the counts stay true
            running = (db.runs[i] for i in db.running)
            slots = Slots(params.limits, ((r.queue, r.user_id, 1) for r in running))
        for run in db.take_queued(horizon, params.limit, params.queues, slots):
            db.move(run, RunStatus.RUNNING)
            run.lease_owner = run.worker_id = params.worker_id
            run.lease_until = until
            run.started_at = None  # leased, not started: mark_started says when it begins
            row = db.jobs[run.job_id]
            if row.job.status is JobStatus.PENDING:
                db.update_job(row, status=JobStatus.RUNNING, updated_at=now)
            claimed.append(run.claimed(row.job))
        return claimed

    async def next_available_at(self) -> datetime | None:
        return self._db().next_available_at()

    async def mark_started(self, worker_id: str, run_ids: Sequence[str], at: datetime) -> list[str]:
        at = check_aware(at, "at")
        return store_policies.start_runs(self._db(), worker_id, run_ids, at)

    async def extend_leases(
        self, worker_id: str, run_ids: Sequence[str], lease_until: datetime
    ) -> LeaseRenewal:
        until = check_aware(lease_until, "lease_until")
        db = self._db()
        held: list[str] = []
        cancel: list[str] = []
        for run_id in dict.fromkeys(run_ids):  # each once, in the order asked
            run = db.runs.get(run_id)
            if run is None or not store_runs.holds(run, worker_id):
                continue
            run.lease_until = until
            held.append(run_id)
            if store_runs.cancel_requested(db, run):
                cancel.append(run_id)
        return LeaseRenewal(held=held, cancel=cancel)

    async def put_live_outputs(self, worker_id: str, outputs: Sequence[LiveOutput]) -> list[bool]:
        db = self._db()
        applied: list[bool] = []
        for output in outputs:
            run = db.runs.get(output.run_id)
            ok = run is not None and store_runs.holds(run, worker_id)
            ok = ok and run is not None and run.attempt == output.attempt
            if ok:
                db.live[output.run_id] = output
            applied.append(ok)
        return applied

    async def complete_runs(self, outcomes: Sequence[RunOutcome]) -> list[bool]:
        db = self._db()
        # A bad outcome refuses the whole batch before any write.
        check_outcomes(outcomes)
        checked = [store_inputs.checked_outcome(o) for o in outcomes]
        return [store_runs.complete(db, outcome) for outcome in checked]

    async def release_runs(self, params: ReleaseParams) -> int:
        now = check_aware(params.now, "now")
        db = self._db()
        released = 0
        for run_id in params.run_ids:
            run = db.runs.get(run_id)
            if run is None or not store_runs.holds(run, params.worker_id):
                continue
            store_runs.lose(
                db,
                run,
                now=now,
                retry_at=now,
                max_interruptions=params.max_interruptions,
                reason=LOST_AT_SHUTDOWN,
            )
            released += 1
        return released

    async def reap_lost(self, params: ReapParams) -> int:
        now = check_aware(params.now, "now")
        retry_at = check_aware(params.retry_at, "retry_at")
        db = self._db()
        live = params.live_workers
        lost: list[tuple[RunRow, str]] = []
        for run_id in db.running:
            if len(lost) >= params.limit:
                break
            run = db.runs[run_id]
            gone = live is not None and run.lease_owner not in live
            expired = run.lease_until is None or run.lease_until < now
            if gone or expired or params.expire_all:
                lost.append((run, LOST_TO_MEMBERSHIP if gone else LOST_TO_LEASE))
        for run, reason in lost:
            store_runs.lose(
                db,
                run,
                now=now,
                retry_at=retry_at,
                max_interruptions=params.max_interruptions,
                reason=reason,
            )
        return len(lost)
