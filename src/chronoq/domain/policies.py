"""Schedule policies: what happens to each nominal fire of a job (DESIGN §5.8).

Every nominal fire time of a job ends in exactly one recorded outcome: a run,
or a *skip* with a reason (``SkipReason``). The stores apply the rules of this
module inside their own transactions, so every backend decides alike:

* ``plan_claim`` — the picker claims a due fire: the misfire policy
  (``run_once`` coalesces a backlog into one run, ``run_all`` runs each missed
  fire inside ``catch_up_window_seconds``, ``skip`` drops fires later than
  ``MISFIRE_GRACE``), ``start_deadline_seconds``, ``start_at`` / ``end_at`` /
  ``max_fires``, and the deterministic jitter of each fire.
* ``plan_start`` — a worker is about to start a run (``Dispatch.mark_started``):
  the overlap policy (the previous run of the job is still going) and the start
  deadline (the run waited too long for a worker).
* ``plan_resume`` — a paused job resumes: the fires it missed while paused are
  skipped (``paused``), or with ``catch_up`` left to the misfire policy.

Skipped fires are recorded as *spans* (``SkipSpan``): a per-second schedule
paused for a day is one record, not 86,400. ``count`` says how many nominal
fires a span covers, when counting them stays cheap (``SPAN_COUNT_CAP``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from chronoq.domain.schedules import DstGap, DstRepeat, Schedule, parse_schedule


class Overlap(StrEnum):
    """A fire of a recurring job comes due while its previous run is still going."""

    ALLOW = "allow"
    """Start it anyway: runs of the job may overlap."""
    SKIP = "skip"
    """Skip it (reason ``overlap``). The default."""
    BUFFER_ONE = "buffer_one"
    """Start it as soon as the running one ends; a further fire meanwhile is skipped."""
    CANCEL_PREVIOUS = "cancel_previous"
    """Stop the running one (it ends CANCELLED), then start this one."""


class Misfire(StrEnum):
    """Fires that came due while nothing could run them (pickers down, job paused and
    resumed with ``catch_up``, server stopped)."""

    RUN_ONCE = "run_once"
    """Coalesce: one run for the whole backlog (the oldest missed fire); the others are
    skipped (reason ``misfire``). The default."""
    RUN_ALL = "run_all"
    """Run every missed fire no older than ``catch_up_window_seconds``; older ones are
    skipped (``misfire``)."""
    SKIP = "skip"
    """Skip every fire claimed more than ``MISFIRE_GRACE`` after its time (``misfire``)."""


class SkipReason(StrEnum):
    """Why a nominal fire has no run."""

    OVERLAP = "overlap"
    PAUSED = "paused"
    MISFIRE = "misfire"
    MISSED_DEADLINE = "missed_deadline"
    END_REACHED = "end_reached"


MISFIRE_GRACE: Final = timedelta(seconds=5)
"""A fire claimed at most this late is on time, not a misfire (a busy picker is not an
outage). Only ``Misfire.SKIP`` and the coalescing of ``RUN_ONCE`` look at it."""

DEFAULT_CATCH_UP_WINDOW: Final = 3600.0
"""``run_all`` without a window catches up at most the last hour."""

RUN_ALL_BATCH: Final = 100
"""``run_all`` creates at most this many runs of one job per claim; the rest stay due, so
the picker's rate cap applies to a catch-up like to any backlog."""

_TICK: Final = timedelta(microseconds=1)
"""The resolution of stored instants: "at or after t" is "after t - _TICK"."""

SPAN_COUNT_CAP: Final = 1_000
"""A skipped span counts its fires one by one up to this many; past it ``count`` is None
(interval schedules are counted exactly by arithmetic, whatever their length). One step
of a cron schedule costs ~7 us, so a claim never spends more than ~7 ms per job counting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Policies:
    """A job's schedule policies (all optional in the API; these are the defaults)."""

    overlap: Overlap = Overlap.SKIP
    misfire: Misfire = Misfire.RUN_ONCE
    catch_up_window_seconds: float | None = None
    """``run_all`` only: how far back missed fires still run (None: ``DEFAULT_CATCH_UP_WINDOW``)."""
    start_deadline_seconds: float | None = None
    """A fire (attempt 1) that would start later than this after its time is skipped
    (``missed_deadline``). None: no deadline."""
    jitter_seconds: float = 0.0
    """Each fire starts up to this much after its nominal time, by a spread fixed per
    fire (``jitter_offset``), so a retry or a failover keeps the same instant."""
    start_at: datetime | None = None
    """No fire before this instant."""
    end_at: datetime | None = None
    """No fire after this instant."""
    max_fires: int | None = None
    """At most this many nominal fires (runs and skips alike); then the schedule ends."""
    dst_gap: DstGap = DstGap.AUTO
    """A fixed wall time that DST skips: fire at the transition (``shift``) or not (``skip``)."""
    dst_repeat: DstRepeat = DstRepeat.AUTO
    """A wall time that DST repeats: fire at the ``first`` occurrence, or at ``both``."""


def schedule_of(cron_schedule: str, timezone: str | None, policies: Policies) -> Schedule:
    """A job's schedule, read with its DST policy (every caller goes through here)."""
    return parse_schedule(
        cron_schedule, timezone, dst_gap=policies.dst_gap, dst_repeat=policies.dst_repeat
    )


DEFAULT_POLICIES: Final = Policies()


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


def jitter_offset(job_id: str, scheduled_for: datetime, jitter_seconds: float) -> timedelta:
    """The fixed spread of one fire: a hash of (job, fire) into ``[0, jitter_seconds)``,
    microsecond-exact, so every picker, retry and failover computes the same instant."""
    if jitter_seconds <= 0:
        return timedelta(0)
    key = f"{job_id}|{int(scheduled_for.timestamp() * 1_000_000)}".encode()
    fraction = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
    return timedelta(microseconds=int(fraction * jitter_seconds * 1_000_000))


def first_fire_at(
    *,
    cron_schedule: str | None,
    timezone: str | None,
    next_fire_at: datetime | None,
    policies: Policies,
    now: datetime,
) -> datetime | None:
    """A new (or rescheduled) job's first nominal fire: ``next_fire_at`` if given (a
    one-shot's time, or an explicit first fire), else the schedule's first fire after
    ``now`` and not before ``start_at``; None if that is past ``end_at``."""
    if next_fire_at is not None:
        first: datetime | None = next_fire_at
    elif cron_schedule is None:
        first = max(now, policies.start_at) if policies.start_at is not None else now
    else:
        schedule = schedule_of(cron_schedule, timezone, policies)
        if policies.start_at is not None and policies.start_at > now:
            # An interval schedule starts at ``start_at`` and keeps that cadence.
            start = policies.start_at
            first = start if _interval(schedule) else schedule.next_after(start - _TICK)
        else:
            first = schedule.next_after(now)
    if first is None or (policies.end_at is not None and first > policies.end_at):
        return None
    if policies.max_fires is not None and policies.max_fires < 1:
        return None
    return first


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
    backlog_last = _last_at_or_before(schedule, job.due, now)
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
        plan.skip_span(due, _last_before(schedule, due, window_start), SkipReason.MISFIRE)
        cursor = _first_at_or_after(schedule, due, window_start)
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
    last_skipped = _last_before(schedule, due, backlog_last) if on_time else backlog_last
    if last_skipped is not None:
        plan.skip_span(due, last_skipped, SkipReason.MISFIRE)
    if on_time and not plan.past_end(backlog_last):
        plan.fire(backlog_last, now)
    return plan.done(None if plan.stopped else plan.following(backlog_last, now))


def _plan_one_shot(job: DueJob, now: datetime) -> ClaimPlan:
    p = job.policies
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
            last = _last_before(self.schedule, first, end + _TICK)  # no fires past the end
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
            last = _nth_fire(self.schedule, first, count)
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
            nxt = _next_after_now(self.schedule, after, now)
        return None if nxt is None else self.bounded(nxt)

    def bounded(self, at: datetime) -> datetime | None:
        end = self.job.policies.end_at
        return None if (end is not None and at > end) or self.stopped else at

    def done(self, next_fire_at: datetime | None) -> ClaimPlan:
        return ClaimPlan(
            runs=self.runs, skips=self.skips, next_fire_at=next_fire_at, fire_count=self.count
        )


def _nth_fire(schedule: Schedule | None, first: datetime, n: int) -> datetime:
    at = first
    for _ in range(n - 1):
        nxt = schedule.next_after(at) if schedule is not None else None
        if nxt is None:
            break
        at = nxt
    return at


def _interval(schedule: Schedule | None) -> timedelta | None:
    interval = getattr(schedule, "interval", None)
    return interval if isinstance(interval, timedelta) and interval > timedelta(0) else None


def _next_after_now(schedule: Schedule, anchor: datetime, now: datetime) -> datetime | None:
    """The first fire after ``now``; interval schedules stay on their anchor's cadence."""
    interval = _interval(schedule)
    if interval is not None:
        return anchor + interval * ((now - anchor) // interval + 1)
    return schedule.next_after(now)


def _first_at_or_after(schedule: Schedule, anchor: datetime, at: datetime) -> datetime | None:
    """The first fire ``>= at`` of a schedule whose fire ``anchor`` is ``< at``."""
    interval = _interval(schedule)
    if interval is not None:
        return anchor + interval * -((anchor - at) // interval)
    return schedule.next_after(at - _TICK)


def _last_at_or_before(schedule: Schedule, first: datetime, until: datetime) -> datetime:
    """The last fire in ``[first, until]``, given that ``first`` is a fire ``<= until``."""
    interval = _interval(schedule)
    if interval is not None:
        return first + interval * ((until - first) // interval)
    last = _last_before(schedule, first, until + timedelta(microseconds=1))
    return last if last is not None else first


def _last_before(schedule: Schedule, first: datetime, before: datetime) -> datetime | None:
    """The last fire ``>= first`` and ``< before`` (None if ``first >= before``)."""
    if first >= before:
        return None
    interval = _interval(schedule)
    if interval is not None:
        return first + interval * ((before - first - timedelta(microseconds=1)) // interval)
    # Cron has no "previous fire": look in windows ending at ``before``, each 8 times
    # wider than the last, and walk forward only inside the first window with a fire.
    width = timedelta(seconds=1)
    while True:
        start = max(first, before - width)
        at = first if start == first else schedule.next_after(start - timedelta(microseconds=1))
        if at is not None and at < before:
            while True:
                nxt = schedule.next_after(at)
                if nxt is None or nxt >= before:
                    return at
                at = nxt
        if start == first:
            return None
        width *= 8


def span_count(
    schedule: Schedule | None, first: datetime, last: datetime, *, cap: int = SPAN_COUNT_CAP
) -> int | None:
    """Nominal fires in ``[first, last]`` (both fires); None past ``cap`` for cron."""
    if schedule is None or first == last:
        return 1
    interval = _interval(schedule)
    if interval is not None:
        return (last - first) // interval + 1
    count = 1
    at: datetime | None = first
    while at is not None and at < last:
        at = schedule.next_after(at)
        if at is None or at > last:
            break
        count += 1
        if count > cap:
            return None
    return count


# -- starting a run (mark_started) --------------------------------------------------------


class StartAction(StrEnum):
    START = "start"
    SKIP = "skip"
    """The run ends SKIPPED; the fire is recorded skipped for ``StartPlan.reason``."""
    BUFFER = "buffer"
    """The run goes back to QUEUED, available when the running one ends (at the latest at
    ``running_lease_until``, when it is judged again); it becomes the job's buffered run."""
    CANCEL_PREVIOUS = "cancel_previous"
    """Request the running run's cancel, and buffer this one (as BUFFER)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartingRun:
    """A run a worker is about to start, and what the store knows of its job."""

    run_id: str
    job_id: str
    scheduled_for: datetime
    attempt: int
    manual: bool
    recurring: bool
    policies: Policies
    running_run_id: str | None
    """The job's run that is RUNNING and started right now, if any (another one)."""
    buffered_run_id: str | None
    """The job's buffered run (QUEUED, waiting for the running one), if any other."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartPlan:
    action: StartAction
    reason: SkipReason | None = None


def plan_start(run: StartingRun, at: datetime) -> StartPlan:
    """Whether ``run`` may start ``at``: its start deadline, then the overlap policy.

    Only recurring jobs have an overlap policy (a one-shot has one fire). Retries
    (attempt > 1) are not new fires: the deadline does not apply to them.
    """
    p = run.policies
    if run.attempt == 1 and p.start_deadline_seconds is not None:
        due = run.scheduled_for + jitter_offset(run.job_id, run.scheduled_for, p.jitter_seconds)
        if at > due + timedelta(seconds=p.start_deadline_seconds):
            return StartPlan(action=StartAction.SKIP, reason=SkipReason.MISSED_DEADLINE)
    if not run.recurring or p.overlap is Overlap.ALLOW or run.running_run_id in (None, run.run_id):
        return StartPlan(action=StartAction.START)
    if p.overlap is Overlap.SKIP:
        return StartPlan(action=StartAction.SKIP, reason=SkipReason.OVERLAP)
    if run.buffered_run_id not in (None, run.run_id):
        return StartPlan(action=StartAction.SKIP, reason=SkipReason.OVERLAP)
    if p.overlap is Overlap.CANCEL_PREVIOUS:
        return StartPlan(action=StartAction.CANCEL_PREVIOUS)
    return StartPlan(action=StartAction.BUFFER)


def gated(recurring: bool, policies: Policies) -> bool:
    """Whether a job's runs go through ``plan_start``'s overlap bookkeeping (the store
    tracks its running and buffered run)."""
    return recurring and policies.overlap is not Overlap.ALLOW


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
    last = _last_at_or_before(schedule, paused_fire_at, now)
    plan.skip_span(paused_fire_at, last, SkipReason.PAUSED)
    nxt = None if plan.stopped else plan.following(last, now)
    return ResumePlan(next_fire_at=nxt, skips=plan.skips, fire_count=plan.count)
