"""The claim rule: what a store writes when the picker claims a due fire, and where a
paused job picks up (DESIGN §5.8).

* ``plan_claim`` — the misfire policy (``run_once`` coalesces a backlog into one run,
  ``run_all`` runs each missed fire inside ``catch_up_window_seconds``, ``skip``
  drops fires later than ``MISFIRE_GRACE``), ``start_deadline_seconds``,
  ``start_at`` / ``end_at`` / ``max_fires``, and each fire's jitter.
* ``plan_resume`` — the fires a paused job missed are skipped (``paused``), or with
  ``catch_up`` left to the misfire policy.

Skipped fires are recorded as *spans* (``SkipSpan``): a per-second schedule paused
for a day is one record, not 86,400; ``count`` says how many nominal fires a span
covers when counting them stays cheap (``fire_spans.SPAN_COUNT_CAP``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from chronoq.domain.fire_spans import (
    SPAN_COUNT_CAP,
    first_at_or_after,
    last_at_or_before,
    last_before,
    next_after_now,
    nth_fire,
    span_count,
)
from chronoq.domain.policies import (
    DEFAULT_POLICIES,
    TICK,
    Misfire,
    Policies,
    SkipReason,
    jitter_offset,
    schedule_of,
)
from chronoq.domain.schedules import Schedule

MISFIRE_GRACE: Final = timedelta(seconds=5)
"""A fire claimed at most this late is on time, not a misfire (a busy picker is not an
outage). Only ``Misfire.SKIP`` and the coalescing of ``RUN_ONCE`` look at it."""

DEFAULT_CATCH_UP_WINDOW: Final = 3600.0
"""``run_all`` without a window catches up at most the last hour."""

RUN_ALL_BATCH: Final = 100
"""``run_all`` creates at most this many runs of one job per claim; the rest stay due, so
the picker's rate cap applies to a catch-up like to any backlog."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SkipSpan:
    """Nominal fires ``first`` .. ``last`` (inclusive) of one job, skipped for ``reason``."""

    first: datetime
    last: datetime
    count: int | None
    """Nominal fires in the span; None when more than ``SPAN_COUNT_CAP`` (cron schedules)."""
    reason: SkipReason


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedRun:
    scheduled_for: datetime
    """The nominal fire."""
    available_at: datetime
    """When it may start: the fire plus its jitter."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimPlan:
    """What a store writes for one claimed job, in the claim's transaction."""

    runs: list[PlannedRun] = field(default_factory=list)
    skips: list[SkipSpan] = field(default_factory=list)
    next_fire_at: datetime | None = None
    """The job's next nominal fire (None: the schedule has ended)."""
    fire_count: int = 0
    """The job's nominal fires so far, this claim's included (``max_fires``)."""

    @property
    def ended(self) -> bool:
        return self.next_fire_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class DueJob:
    """A job the picker is claiming, as the store read it."""

    job_id: str
    cron_schedule: str | None
    timezone: str | None
    due: datetime
    """Its ``next_fire_at``: the oldest nominal fire not yet claimed."""
    policies: Policies = DEFAULT_POLICIES
    fire_count: int = 0
    """Nominal fires claimed so far."""


def plan_claim(job: DueJob, now: datetime) -> ClaimPlan:
    """The runs, skips and next fire of a due job claimed at ``now`` (the picker's claim).

    A fire claimed before its time (the picker's look-ahead) or within
    ``MISFIRE_GRACE`` of it is on time: it runs. Otherwise the fires from ``due``
    up to ``now`` are a backlog, handled by the misfire policy. A fire that could
    no longer start within ``start_deadline_seconds`` is skipped (``missed_deadline``).
    """
    if job.cron_schedule is None:
        return _plan_one_shot(job, now)
    schedule = schedule_of(job.cron_schedule, job.timezone, job.policies)
    plan = _Plan(job, schedule)
    if plan.past_end(job.due):  # the end moved before this fire (a change to the job)
        plan.skip_one(job.due, SkipReason.END_REACHED)
        return plan.done(None)
    if job.due + MISFIRE_GRACE >= now:  # on time
        plan.fire(job.due, now)
        return plan.done(plan.following(job.due))
    if job.policies.misfire is Misfire.RUN_ALL:
        return _run_all(plan, schedule, now)
    backlog_last = last_at_or_before(schedule, job.due, now)
    if job.policies.misfire is Misfire.SKIP:
        return _skip_late(plan, schedule, backlog_last, now)
    # RUN_ONCE: the oldest missed fire runs once for the whole backlog.
    plan.fire(job.due, now)
    if backlog_last > job.due and not plan.stopped:
        second = schedule.next_after(job.due)
        if second is not None and second <= backlog_last:
            plan.skip_span(second, backlog_last, SkipReason.MISFIRE)
    return plan.done(None if plan.stopped else plan.following(backlog_last, now))


def _run_all(plan: _Plan, schedule: Schedule, now: datetime) -> ClaimPlan:
    """Each missed fire inside the catch-up window runs (``RUN_ALL_BATCH`` per claim)."""
    p, due = plan.job.policies, plan.job.due
    window_s = p.catch_up_window_seconds
    window_start = now - timedelta(
        seconds=window_s if window_s is not None else DEFAULT_CATCH_UP_WINDOW
    )
    cursor: datetime | None = due
    if due < window_start:
        plan.skip_span(due, last_before(schedule, due, window_start), SkipReason.MISFIRE)
        cursor = first_at_or_after(schedule, due, window_start)
    made = 0
    while cursor is not None and cursor <= now and made < RUN_ALL_BATCH:
        if plan.past_end(cursor):
            return plan.done(None)
        plan.fire(cursor, now)
        made += 1
        cursor = schedule.next_after(cursor)
    if cursor is None or plan.stopped:
        return plan.done(None)
    return plan.done(plan.bounded(cursor))


def _skip_late(plan: _Plan, schedule: Schedule, backlog_last: datetime, now: datetime) -> ClaimPlan:
    """Fires later than the grace are skipped; the newest one runs if still within it."""
    due = plan.job.due
    on_time = backlog_last + MISFIRE_GRACE >= now
    last_skipped = last_before(schedule, due, backlog_last) if on_time else backlog_last
    if last_skipped is not None:
        plan.skip_span(due, last_skipped, SkipReason.MISFIRE)
    if on_time and not plan.past_end(backlog_last):
        plan.fire(backlog_last, now)
    return plan.done(None if plan.stopped else plan.following(backlog_last, now))


def _plan_one_shot(job: DueJob, now: datetime) -> ClaimPlan:
    p = job.policies
    if (
        p.misfire is not Misfire.SKIP
        and p.start_deadline_seconds is None
        and (p.end_at is None and p.max_fires is None and not p.jitter_seconds)
    ):  # the common case, on the picker's hot path: its one fire runs, on time
        run = PlannedRun(scheduled_for=job.due, available_at=job.due)
        return ClaimPlan(runs=[run], next_fire_at=None, fire_count=job.fire_count + 1)
    plan = _Plan(job, None)
    late = now - job.due
    if plan.past_end(job.due):  # a change moved its end before its one fire
        plan.skip_one(job.due, SkipReason.END_REACHED)
    elif p.misfire is Misfire.SKIP and late > MISFIRE_GRACE:
        plan.skip_span(job.due, job.due, SkipReason.MISFIRE)
    else:
        plan.fire(job.due, now)
    return plan.done(None)


class _Plan:
    """Accumulates one claim's runs and skips, counting fires against ``max_fires``."""

    def __init__(self, job: DueJob, schedule: Schedule | None) -> None:
        self.job = job
        self.schedule = schedule
        self.runs: list[PlannedRun] = []
        self.skips: list[SkipSpan] = []
        self.count = job.fire_count

    @property
    def stopped(self) -> bool:
        m = self.job.policies.max_fires
        return m is not None and self.count >= m

    def past_end(self, at: datetime) -> bool:
        end = self.job.policies.end_at
        return (end is not None and at > end) or self.stopped

    def fire(self, scheduled_for: datetime, now: datetime) -> None:
        """Fire ``scheduled_for``: a run, or a skip if it could no longer meet its deadline."""
        p = self.job.policies
        self.count += 1
        available = scheduled_for + jitter_offset(self.job.job_id, scheduled_for, p.jitter_seconds)
        deadline = p.start_deadline_seconds
        if deadline is not None and now > available + timedelta(seconds=deadline):
            self._add_skip(scheduled_for, scheduled_for, 1, SkipReason.MISSED_DEADLINE)
            return
        self.runs.append(PlannedRun(scheduled_for=scheduled_for, available_at=available))

    def skip_span(self, first: datetime, last: datetime | None, reason: SkipReason) -> None:
        end = self.job.policies.end_at
        if last is not None and end is not None and last > end and self.schedule is not None:
            last = last_before(self.schedule, first, end + TICK)  # no fires past the end
        if last is None or last < first:
            return
        max_fires = self.job.policies.max_fires
        left = None if max_fires is None else max_fires - self.count
        if left is not None and left <= 0:
            return
        # With max_fires, count at least as far as the fires left: an uncounted span must
        # never hide where the schedule ends.
        cap = SPAN_COUNT_CAP if left is None else max(SPAN_COUNT_CAP, left)
        count = span_count(self.schedule, first, last, cap=cap)
        if left is not None and (count is None or count > left):
            count = left  # the schedule ends inside the span: it covers the fires that exist
            last = nth_fire(self.schedule, first, count)
        self.count += count if count is not None else SPAN_COUNT_CAP
        self._add_skip(first, last, count, reason)

    def skip_one(self, at: datetime, reason: SkipReason) -> None:
        self.count += 1
        self._add_skip(at, at, 1, reason)

    def _add_skip(
        self, first: datetime, last: datetime, count: int | None, reason: SkipReason
    ) -> None:
        self.skips.append(SkipSpan(first=first, last=last, count=count, reason=reason))

    def following(self, after: datetime, now: datetime | None = None) -> datetime | None:
        """The next nominal fire after ``after`` (and, for a backlog, after ``now``)."""
        if self.schedule is None or self.stopped:
            return None
        nxt = self.schedule.next_after(after)
        if nxt is not None and now is not None and nxt <= now:
            nxt = next_after_now(self.schedule, after, now)
        return None if nxt is None else self.bounded(nxt)

    def bounded(self, at: datetime) -> datetime | None:
        end = self.job.policies.end_at
        return None if (end is not None and at > end) or self.stopped else at

    def done(self, next_fire_at: datetime | None) -> ClaimPlan:
        return ClaimPlan(
            runs=self.runs, skips=self.skips, next_fire_at=next_fire_at, fire_count=self.count
        )


# -- resuming a paused job ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumePlan:
    next_fire_at: datetime | None
    skips: list[SkipSpan] = field(default_factory=list)
    fire_count: int = 0


def plan_resume(
    *,
    job_id: str,
    cron_schedule: str | None,
    timezone: str | None,
    paused_fire_at: datetime | None,
    policies: Policies,
    fire_count: int,
    now: datetime,
    catch_up: bool,
) -> ResumePlan:
    """Where a paused job picks up. Its held fire ``paused_fire_at`` and those after it up
    to ``now`` were missed while paused: skipped (``paused``), or with ``catch_up`` handed
    to the misfire policy by making the held fire due again. A one-shot job keeps its one
    fire (skipping it would drop the job): it runs now if its time has passed."""
    if paused_fire_at is None:
        return ResumePlan(next_fire_at=None, fire_count=fire_count)
    if cron_schedule is None or catch_up or paused_fire_at > now:
        return ResumePlan(next_fire_at=paused_fire_at, fire_count=fire_count)
    due = DueJob(
        job_id=job_id,
        cron_schedule=cron_schedule,
        timezone=timezone,
        due=paused_fire_at,
        policies=policies,
        fire_count=fire_count,
    )
    schedule = schedule_of(cron_schedule, timezone, policies)
    plan = _Plan(due, schedule)
    last = last_at_or_before(schedule, paused_fire_at, now)
    plan.skip_span(paused_fire_at, last, SkipReason.PAUSED)
    nxt = None if plan.stopped else plan.following(last, now)
    return ResumePlan(next_fire_at=nxt, skips=plan.skips, fire_count=plan.count)
