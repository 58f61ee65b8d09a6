"""``claim_due``'s decisions and its one write: ``claims.plan_claim`` on each locked due job.

The picker's select (``sql.CLAIM_DUE_*``) locks the due jobs; for each, ``Fires.add``
asks ``plan_claim`` for its runs (available at the fire plus its jitter), its skipped
spans and its next fire, and ``FIRE`` writes them all in one statement: the runs, the
ledger's skips (and their totals), and each job's next fire, fire count and status (a
recurring job whose schedule ended without a run of this claim is COMPLETED when it
was PENDING; a one-shot job whose only fire was skipped is FAILED).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chronoq.adapters.postgres.rows import policies_from_record
from chronoq.adapters.postgres.skips import Skips, skip_ctes
from chronoq.domain.claims import ClaimPlan, DueJob, plan_claim
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Run
from chronoq.domain.states import JOB_TERMINAL, JobStatus, RunStatus

_TERMINAL_JOB = frozenset(s.value for s in JOB_TERMINAL)

FIRE = (
    "WITH fired AS ("
    " INSERT INTO job_runs (run_id, job_id, user_id, scheduled_for, attempt, status,"
    " triggered_at, available_at, queue, priority)"
    " SELECT r, j, u, s, 1, 'QUEUED', $5, a, q, p"
    " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $6::timestamptz[],"
    " $20::text[], $21::int[]) AS t(r, j, u, s, a, q, p)"
    " WHERE NOT EXISTS (SELECT 1 FROM job_runs x"
    " WHERE x.job_id = t.j AND x.scheduled_for = t.s) RETURNING run_id),"
    " advanced AS ("
    " UPDATE jobs SET next_fire_at = t.following, fire_count = t.fires, status = t.status,"
    " updated_at = $5"
    " FROM unnest($7::uuid[], $8::timestamptz[], $9::bigint[], $10::text[])"
    " AS t(job_id, following, fires, status)"
    " WHERE jobs.job_id = t.job_id), " + skip_ctes(11) + " SELECT run_id::text FROM fired"
)
"""Create the claimed fires' runs, record their skips and advance their jobs. The jobs
are locked by the ``CLAIM_DUE_*`` select of the same transaction, so their
``next_fire_at`` is still the fire being claimed (no re-check needed: one on
``next_fire_at`` led the planner to probe the due index, quadratic when many jobs
share one due time). Each run takes the queue and priority the claim's select read of
its job ($20, $21). Nothing skipped: the skip inserts are empty (no extra statement,
no WAL). Returns the runs inserted: a fire that has a run already (a manual fire at
that very microsecond, from before the schedule changed) keeps it, and the claim goes
on. (A probe of the index the insert descends anyway, not ``ON CONFLICT``: speculative
insertion would cost every run an extra WAL record. The job's lock keeps a trigger out
between the probe and the insert.)"""


@dataclass(slots=True)
class Fires:
    """The runs, skips and job updates of one ``claim_due`` (``FIRE``)."""

    now: datetime
    runs: list[Run] = field(default_factory=list)
    skips: Skips = field(default_factory=Skips)
    _jobs: list[tuple[Any, datetime | None, int, str]] = field(default_factory=list)

    def add(self, row: Sequence[Any], at: datetime | None = None) -> ClaimPlan:
        """One locked due job: a row of ``sql.CLAIM_DUE_*`` (id, user, cron, timezone, due,
        status, policies, fire count, queue, priority), planned as claimed at ``at`` (None:
        ``now``; see ``limits.Deferrals``). Returns its plan."""
        job_id, user_id, cron, tz, due, status = row[:6]
        key = str(job_id)
        plan = plan_claim(
            DueJob(
                job_id=key,
                cron_schedule=cron,
                timezone=tz,
                due=due,
                policies=policies_from_record(row, 6),
                fire_count=row[16],
            ),
            self.now if at is None else at,
        )
        for planned in plan.runs:
            self.runs.append(
                Run(
                    run_id=new_id(),
                    job_id=key,
                    user_id=user_id,
                    scheduled_for=planned.scheduled_for,
                    attempt=1,
                    status=RunStatus.QUEUED,
                    triggered_at=self.now,
                    available_at=planned.available_at,
                    queue=row[17],
                    priority=row[18],
                )
            )
        for span in plan.skips:
            self.skips.span(job_id, user_id, span, self.now)
        if plan.next_fire_at is None and not plan.runs and status not in _TERMINAL_JOB:
            if cron is None:
                status = JobStatus.FAILED.value  # its one fire was skipped
            elif status == JobStatus.PENDING:
                status = JobStatus.COMPLETED.value  # the schedule ended, nothing runs
        self._jobs.append((job_id, plan.next_fire_at, plan.fire_count, status))
        return plan

    @property
    def job_count(self) -> int:
        return len(self._jobs)

    def args(self) -> list[Any]:
        jobs = list(zip(*self._jobs, strict=True)) if self._jobs else [(), (), (), ()]
        return [
            [r.run_id for r in self.runs],
            [r.job_id for r in self.runs],
            [r.user_id for r in self.runs],
            [r.scheduled_for for r in self.runs],
            self.now,
            [r.available_at for r in self.runs],
            *(list(column) for column in jobs),
            *self.skips.args(),
            [r.queue for r in self.runs],
            [r.priority for r in self.runs],
        ]
