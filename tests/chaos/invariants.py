"""The invariant checker (RELIABILITY.md I1–I7) over the store and the ledger.

It reads PostgreSQL directly (``jobs``, ``job_runs``; one REPEATABLE READ snapshot),
the accepted jobs (every 201 the test got), the ledger of actual executions and
the supervisor's fault log, and returns a ``Report``: problems per invariant (a
clean report has none) and figures (executions, duplicates explained, fires
coalesced, lag).

The recurring-schedule oracle is independent of Chronoq's schedule code for the
schedules the chaos tests use (``@every Ns`` anchored on the first fire; ``*/N * *
* * *`` on UTC seconds divisible by N). The misfire rule checked is DESIGN §5.8
(coalesce, the default ``run_once``): a fire claimed at most ``MISFIRE_GRACE`` after
its time is on time and followed by the next schedule time; one claimed later, at
``T``, is followed by the first schedule time after ``T``. Fires skipped that way must
fall in a window in which the harness impaired dispatch (a picker killed/frozen/cut
off, the leader killed, PostgreSQL down), else they are lost fires.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from chronoq.domain.claims import MISFIRE_GRACE
from tests.support.waiting import wait_for

from .harness import (
    LEADER_TTL,
    LEASE,
    LOOKAHEAD,
    MEMBER_TTL,
    REAP_INTERVAL,
    USER,
    Accepted,
    Db,
    Execution,
    Fault,
    JobBook,
)

TERMINAL = frozenset({"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED", "DEAD", "SKIPPED"})
ATTEMPT_ENDS = frozenset({"RETRY_SCHEDULED", "INTERRUPTED"})
"""End an attempt, not the fire: attempt + 1 follows (a job failure; a lost worker)."""
LEASE_LOST = "lease expired"
"""In the error of a RETRY_SCHEDULED run reaped before INTERRUPTED existed (old histories)."""
EARLY_TOLERANCE = timedelta(milliseconds=100)
STAMP_TOLERANCE = timedelta(milliseconds=1)
SHOWN = 15  # problems listed per invariant in a report

# How long after a fault dispatch may be impaired (seconds). A dead picker's shards
# move once its heartbeat is older than the member ttl and the leader's next tick
# reassigns them; a dead leader is replaced within ~2 leader ttls, and so on.
_PICKER_GAP = MEMBER_TTL + 2 * LEADER_TTL + 2.0
_LEADER_GAP = 3 * LEADER_TTL + 2.0
_IMPAIRING: dict[tuple[str, str], float] = {
    ("SIGKILL", "picker"): _PICKER_GAP,
    ("SIGTERM", "picker"): _PICKER_GAP,
    ("SIGSTOP", "picker"): _PICKER_GAP,
    ("SIGCONT", "picker"): _PICKER_GAP,
    ("start", "picker"): _PICKER_GAP,
    ("partition", "picker"): _PICKER_GAP,
    ("heal", "picker"): _PICKER_GAP + 6.0,  # TCP retransmission backoff after the link is up
    ("failpoint", "picker"): _PICKER_GAP,
    ("SIGKILL", "coordinator"): _LEADER_GAP,
    ("SIGTERM", "coordinator"): _LEADER_GAP,
    ("pg-crash", "-"): 8.0,
    ("pg-start", "-"): 8.0,
}


_PICKER_DOWN = ("SIGKILL", "SIGTERM", "SIGSTOP", "partition", "failpoint")
_PICKER_UP = ("start", "SIGCONT", "heal")


def impaired_windows(faults: Iterable[Fault]) -> list[tuple[float, float]]:
    """(start, end) epoch seconds in which claims may have been late; overlaps merged.

    Each fault opens a window of its own span (``_IMPAIRING``). Outages with two ends
    are covered from end to end: a picker frozen or cut off until it is thawed or
    healed, PostgreSQL from its crash to its start, an overload the test causes on
    purpose (``overload`` .. ``overload-end``), and any time in which no picker
    at all was running (from the fault that took the last one down to the start of
    one). An outage never ended is impaired to the end.
    """
    spans: list[tuple[float, float]] = []
    open_since: dict[str, float] = {}
    live: set[str] = set()
    for fault in sorted(faults, key=lambda f: f.at):
        span = _IMPAIRING.get((fault.action, fault.role))
        if span is not None:
            spans.append((fault.at - LOOKAHEAD, fault.at + span))
        opening = fault.action in ("SIGSTOP", "partition", "pg-crash", "overload")
        if opening and fault.role in ("picker", "-"):
            open_since.setdefault(fault.target, fault.at)
        closing = fault.action in ("SIGCONT", "heal", "pg-start", "overload-end")
        if closing and fault.target in open_since:
            spans.append((open_since.pop(fault.target), fault.at))
        if fault.role != "picker":
            continue
        had = bool(live)
        if fault.action in _PICKER_UP:
            live.add(fault.target)
        elif fault.action in _PICKER_DOWN:
            live.discard(fault.target)
        if had and not live:
            open_since["all pickers"] = fault.at
        elif live and not had and "all pickers" in open_since:
            spans.append((open_since.pop("all pickers"), fault.at))
    spans += [(start, float("inf")) for start in open_since.values()]
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# -- the schedule oracle ---------------------------------------------------------------------

_EVERY = re.compile(r"^@every (\d+)s$")
_CRON_SECONDS = re.compile(r"^\*/(\d+) \* \* \* \* \*$")
_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(when: datetime) -> int:
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds


def _from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class Grid:
    """A fixed-period schedule: the instants ``anchor + k * period``."""

    anchor_us: int
    period_us: int

    def after(self, when: datetime) -> datetime:
        """The first instant of the grid strictly after ``when``."""
        k = (_micros(when) - self.anchor_us) // self.period_us + 1
        return _from_micros(self.anchor_us + k * self.period_us)

    def between(self, start: datetime, end: datetime) -> list[datetime]:
        """Grid instants in [start, end)."""
        out = []
        t = self.after(start - timedelta(microseconds=1))
        while t < end:
            out.append(t)
            t = self.after(t)
        return out


def grid_of(job: Accepted) -> Grid:
    cron = str(job.spec.get("cron_schedule"))
    every = _EVERY.match(cron)
    if every:
        return Grid(_micros(job.next_fire_at), int(every.group(1)) * _US)
    seconds = _CRON_SECONDS.match(cron)
    if seconds and 60 % int(seconds.group(1)) == 0:
        return Grid(0, int(seconds.group(1)) * _US)
    raise ValueError(f"the chaos oracle does not know the schedule {cron!r}")


# -- the report ------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    stats: dict[str, Any] = field(default_factory=dict)
    context: str = ""

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def add(self, invariant: str, message: str) -> None:
        self.problems[invariant].append(message)

    def __str__(self) -> str:
        lines = ["invariants: " + ("CLEAN" if self.ok else "VIOLATED")]
        for key in sorted(self.problems):
            found = self.problems[key]
            if not found:
                continue
            lines.append(f"  {key}: {len(found)} problem(s)")
            lines += [f"    - {p}" for p in found[:SHOWN]]
            if len(found) > SHOWN:
                lines.append(f"    ... {len(found) - SHOWN} more")
        lines.append("  figures: " + ", ".join(f"{k}={v}" for k, v in sorted(self.stats.items())))
        if self.context:
            lines.append(self.context)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    job_id: str
    scheduled_for: datetime
    attempt: int
    status: str
    triggered_at: datetime
    available_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    worker_id: str | None
    error_message: str | None
    lease_until: datetime | None

    @property
    def fire(self) -> tuple[str, datetime]:
        return (self.job_id, self.scheduled_for)


@dataclass(frozen=True, slots=True)
class JobRow:
    job_id: str
    user_id: str
    cron_schedule: str | None
    next_fire_at: datetime | None
    status: str
    payload: str | None


@dataclass(slots=True)
class Snapshot:
    now: datetime
    jobs: dict[str, JobRow]
    runs: list[RunRow]
    fires: dict[tuple[str, datetime], list[RunRow]]

    @classmethod
    def take(cls, db: Db) -> Snapshot:
        now, jobs, runs = asyncio.run(_read(db.dsn))
        fires: dict[tuple[str, datetime], list[RunRow]] = defaultdict(list)
        for run in runs:
            fires[run.fire].append(run)
        for attempts in fires.values():
            attempts.sort(key=lambda r: r.attempt)
        return cls(now=now, jobs=jobs, runs=runs, fires=dict(fires))


async def _read(dsn: str) -> tuple[datetime, dict[str, JobRow], list[RunRow]]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            now = await conn.fetchval("SELECT now()")
            job_rows = await conn.fetch(
                "SELECT job_id::text, user_id, cron_schedule, next_fire_at, status, payload"
                " FROM jobs"
            )
            run_rows = await conn.fetch(
                "SELECT run_id::text, job_id::text, scheduled_for, attempt, status, triggered_at,"
                " available_at, started_at, completed_at, worker_id, error_message, lease_until"
                " FROM job_runs"
            )
    finally:
        await conn.close()
    jobs = {r[0]: JobRow(*r) for r in job_rows}
    return now, jobs, [RunRow(*r) for r in run_rows]


# -- the checker -----------------------------------------------------------------------------


@dataclass(slots=True)
class Checker:
    """Checks I1–I7. ``cutoff``: fires due up to it must have ended."""

    db: Db
    book: JobBook
    executions: Sequence[Execution]
    faults: Sequence[Fault]
    cutoff: datetime
    bad_ledger_lines: Sequence[str] = ()
    probe_jobs: frozenset[str] | None = None
    """Jobs whose payload is a ledger probe (None: every accepted job)."""
    report: Report = field(default_factory=Report)
    snap: Snapshot | None = None
    windows: list[tuple[float, float]] = field(default_factory=list)

    read_bad_lines: Callable[[], Sequence[str]] | None = None
    read_executions: Callable[[], Sequence[Execution]] | None = None
    """If given, the ledger is read AFTER the store snapshot: a run is executed before it
    is recorded, so every outcome in the snapshot then has its ledger line (reading the
    ledger first races with recurring jobs that keep running past the cutoff)."""

    def run(self) -> Report:
        self.snap = Snapshot.take(self.db)
        if self.read_executions is not None:
            self.executions = self.read_executions()
        if self.read_bad_lines is not None:
            self.bad_ledger_lines = self.read_bad_lines()
        self.windows = impaired_windows(self.faults)
        self.check_i7_accepted_exist()
        self.check_i1_fires()
        self.check_i2_one_terminal()
        self.check_i3_ledger()
        self.check_i4_nothing_stuck()
        self.check_i5_nothing_early()
        self.check_i6_attempts()
        self.figures()
        return self.report

    @property
    def s(self) -> Snapshot:
        assert self.snap is not None
        return self.snap

    def _probe(self, job_id: str) -> bool:
        return job_id in self.book.jobs and (self.probe_jobs is None or job_id in self.probe_jobs)

    def _impaired(self, start: datetime, end: datetime) -> bool:
        a, b = start.timestamp(), end.timestamp()
        return any(ws <= b and a <= we for ws, we in self.windows)

    # I7 -----------------------------------------------------------------------------------

    def check_i7_accepted_exist(self) -> None:
        for job_id in self.book.jobs:
            row = self.s.jobs.get(job_id)
            if row is None:
                self.report.add("I7 accepted job lost", job_id)
            elif row.user_id != USER:
                self.report.add("I7 accepted job changed owner", f"{job_id}: {row.user_id}")

    # I1 -----------------------------------------------------------------------------------

    def check_i1_fires(self) -> None:
        by_job: dict[str, list[datetime]] = defaultdict(list)
        for job_id, scheduled in self.s.fires:
            by_job[job_id].append(scheduled)
        self.report.stats.update(coalesced_fires=0, catch_up_fires=0)
        for job in self.book.jobs.values():
            if job.job_id not in self.s.jobs:
                continue
            fires = sorted(by_job.get(job.job_id, ()))
            if job.recurring:
                self._check_recurring(job, fires)
            else:
                self._check_one_shot(job, fires)
            for scheduled in fires:
                if scheduled <= self.cutoff:
                    self._check_ended(job.job_id, scheduled)

    def _check_one_shot(self, job: Accepted, fires: list[datetime]) -> None:
        row = self.s.jobs[job.job_id]
        if len(fires) > 1:
            self.report.add("I1 one-shot fired more than once", f"{job.job_id}: {fires}")
        if fires and abs(fires[0] - job.next_fire_at) > STAMP_TOLERANCE:
            self.report.add(
                "I1 fire at the wrong time", f"{job.job_id}: {fires[0]} != {job.next_fire_at}"
            )
        if not fires and job.next_fire_at <= self.cutoff:
            self.report.add(
                "I1 fire lost",
                f"{job.job_id} due {job.next_fire_at}: no run (job {row.status}, "
                f"next_fire_at {row.next_fire_at})",
            )
        if fires and row.next_fire_at is not None:
            self.report.add("I1 one-shot still scheduled", f"{job.job_id}: {row.next_fire_at}")

    def _check_recurring(self, job: Accepted, fires: list[datetime]) -> None:
        grid = grid_of(job)
        row = self.s.jobs[job.job_id]
        if not fires:
            if job.next_fire_at <= self.cutoff:
                self.report.add("I1 fire lost", f"{job.job_id}: recurring job never fired")
            return
        if abs(fires[0] - job.next_fire_at) > STAMP_TOLERANCE:
            self.report.add(
                "I1 fire at the wrong time",
                f"{job.job_id}: first fire {fires[0]} != {job.next_fire_at}",
            )
        following = [*fires[1:], row.next_fire_at]
        for scheduled, actual in zip(fires, following, strict=True):
            if actual is None:
                continue  # reported below as a dead schedule
            claimed = self._claimed_at(job.job_id, scheduled)
            on_time = claimed <= scheduled + MISFIRE_GRACE
            expected = grid.after(scheduled if on_time else claimed)
            if actual != expected:
                self.report.add(
                    "I1 schedule broken",
                    f"{job.job_id}: after {scheduled} (claimed {claimed}) came {actual}, "
                    f"expected {expected}",
                )
                continue
            missed = grid.between(grid.after(scheduled), expected)
            if not missed:
                continue
            self.report.stats["coalesced_fires"] += len(missed)
            self.report.stats["catch_up_fires"] += 1
            if not self._impaired(scheduled - timedelta(seconds=LOOKAHEAD), claimed):
                self.report.add(
                    "I1 fires skipped without an outage",
                    f"{job.job_id}: {len(missed)} fire(s) {missed[0]}..{missed[-1]} skipped; "
                    f"{scheduled} was claimed late at {claimed}",
                )
        if row.next_fire_at is None and row.status not in ("CANCELLED",):
            self.report.add("I1 schedule died", f"{job.job_id}: next_fire_at NULL ({row.status})")
        elif row.next_fire_at is not None and row.next_fire_at <= self.cutoff:
            self.report.add(
                "I1 schedule stalled",
                f"{job.job_id}: next_fire_at {row.next_fire_at} <= cutoff {self.cutoff}",
            )

    def _claimed_at(self, job_id: str, scheduled: datetime) -> datetime:
        return self.s.fires[(job_id, scheduled)][0].triggered_at

    def _check_ended(self, job_id: str, scheduled: datetime) -> None:
        attempts = self.s.fires[(job_id, scheduled)]
        ended = [r for r in attempts if r.status in TERMINAL]
        if not ended:
            self.report.add(
                "I1 fire without an outcome",
                f"{job_id}@{scheduled}: " + ", ".join(f"#{r.attempt} {r.status}" for r in attempts),
            )

    # I2 -----------------------------------------------------------------------------------

    def check_i2_one_terminal(self) -> None:
        for (job_id, scheduled), attempts in self.s.fires.items():
            ended = [f"#{r.attempt} {r.status}" for r in attempts if r.status in TERMINAL]
            if len(ended) > 1:
                self.report.add("I2 two terminal outcomes", f"{job_id}@{scheduled}: {ended}")

    # I3 -----------------------------------------------------------------------------------

    def check_i3_ledger(self) -> None:
        """Each attempt executes at most once; a fire executes again only after an attempt
        was visibly lost: INTERRUPTED (its worker was lost mid-run; explained by the run
        history itself), or, in old histories, RETRY_SCHEDULED by a lease expiry that an
        injected fault must explain."""
        for line in self.bad_ledger_lines:
            self.report.add("I3 torn ledger line", repr(line))
        runs = {(r.job_id, r.scheduled_for, r.attempt): r for r in self.s.runs}
        per_attempt = Counter((e.job_id, e.scheduled_for, e.attempt) for e in self.executions)
        explained = {
            "duplicates_after_kill": 0,
            "duplicates_after_outage": 0,
            "duplicates_interrupted": 0,
            "duplicates_interrupted_without_fault": 0,
        }
        examples: list[str] = []
        for key, count in per_attempt.items():
            run = runs.get(key)
            if run is None:
                self.report.add("I3 execution without a run", f"{key[0]}@{key[1]} #{key[2]}")
                continue
            if count > 1 and not self._handed_back(run):
                self.report.add(
                    "I3 one attempt executed twice", f"{key[0]}@{key[1]} #{key[2]} x{count}"
                )
            if not self._lost_mid_run(run) or (key[0], key[1], key[2] + 1) not in runs:
                continue
            if not any(e for e in per_attempt if e[:2] == key[:2] and e[2] > key[2]):
                continue  # the redelivery has not executed (yet): no duplicate
            cause = self._lease_loss_cause(run)
            if run.status == "INTERRUPTED":
                explained["duplicates_interrupted"] += 1
                if cause is None:
                    explained["duplicates_interrupted_without_fault"] += 1
                else:
                    explained[cause] += 1
            elif cause is None:
                self.report.add(
                    "I3 duplicate execution without a fault",
                    f"{key[0]}@{key[1]}: attempt {key[2]} on {run.worker_id} lost its lease "
                    f"(started {run.started_at}, reaped {run.completed_at}) and ran again",
                )
                continue
            else:
                explained[cause] += 1
            if len(examples) < 3:
                examples.append(
                    f"{key[0][-6:]}#{key[2]} {run.status} on {run.worker_id} started "
                    f"{run.started_at:%H:%M:%S.%f}, lost {run.completed_at:%H:%M:%S.%f}"
                )
        self._check_unexecuted(per_attempt)
        self.report.stats.update(explained)
        if examples:
            self.report.stats["duplicate_examples"] = examples

    @staticmethod
    def _lost_mid_run(run: RunRow) -> bool:
        """The attempt ended because its worker was lost (not by the job's own outcome)."""
        if run.status == "INTERRUPTED":
            return True
        return run.status == "RETRY_SCHEDULED" and LEASE_LOST in (run.error_message or "")

    def _check_unexecuted(self, per_attempt: Counter[tuple[str, datetime, int]]) -> None:
        for run in self.s.runs:
            if not self._probe(run.job_id) or run.status not in ("COMPLETED", "FAILED"):
                continue
            if (run.job_id, run.scheduled_for, run.attempt) not in per_attempt:
                self.report.add(
                    "I3 outcome recorded without an execution",
                    f"{run.job_id}@{run.scheduled_for} #{run.attempt} {run.status}",
                )

    def _handed_back(self, run: RunRow) -> bool:
        """Same attempt twice is fine only after a graceful stop handed it back unfinished."""
        return any(f.action == "SIGTERM" and f.role == "worker" for f in self.faults)

    def _lease_loss_cause(self, run: RunRow) -> str | None:
        """Which injected fault explains why ``run``'s worker stopped heartbeating."""
        start = (run.started_at or run.triggered_at).timestamp() - 1.0
        end = (run.completed_at or self.s.now).timestamp()
        for fault in self.faults:
            if not start <= fault.at <= end:
                continue
            if fault.target == _member(run.worker_id) and fault.action in (
                "SIGKILL", "SIGSTOP", "SIGTERM", "partition", "failpoint",
            ):  # fmt: skip
                return "duplicates_after_kill"
            if fault.action in ("pg-crash", "pg-start"):
                return "duplicates_after_outage"
        return None

    # I4 -----------------------------------------------------------------------------------

    def check_i4_nothing_stuck(self) -> None:
        stale = self.s.now - timedelta(seconds=REAP_INTERVAL + 1.0)
        queued_stale = self.s.now - timedelta(seconds=LEASE + 2.0)
        for run in self.s.runs:
            if run.status == "RUNNING" and run.lease_until is not None and run.lease_until < stale:
                self.report.add(
                    "I4 stuck RUNNING",
                    f"{run.job_id}@{run.scheduled_for} #{run.attempt} lease_until {run.lease_until}"
                    f" (now {self.s.now}) on {run.worker_id}",
                )
            if run.status == "QUEUED" and run.available_at < queued_stale:
                self.report.add(
                    "I4 stuck QUEUED",
                    f"{run.job_id}@{run.scheduled_for} #{run.attempt} available {run.available_at}",
                )

    # I5 -----------------------------------------------------------------------------------

    def check_i5_nothing_early(self) -> None:
        worst = timedelta(0)
        for e in self.executions:
            early = e.scheduled_for - e.started
            worst = max(worst, early)
            if early > EARLY_TOLERANCE:
                self.report.add(
                    "I5 started early",
                    f"{e.job_id}@{e.scheduled_for} #{e.attempt} started {e.started} "
                    f"({early.total_seconds() * 1000:.0f} ms early)",
                )
        self.report.stats["max_early_ms"] = round(worst.total_seconds() * 1000, 1)

    # I6 -----------------------------------------------------------------------------------

    def check_i6_attempts(self) -> None:
        for (job_id, scheduled), attempts in self.s.fires.items():
            numbers = [r.attempt for r in attempts]
            if numbers != list(range(1, len(numbers) + 1)):
                self.report.add("I6 attempts not 1..n", f"{job_id}@{scheduled}: {numbers}")
            for run in attempts[:-1]:
                if run.status not in ATTEMPT_ENDS:
                    self.report.add(
                        "I6 attempt after an ending",
                        f"{job_id}@{scheduled}: #{run.attempt} {run.status} is followed by more",
                    )
            last = attempts[-1]
            if last.status in ATTEMPT_ENDS:
                self.report.add(
                    "I6 retry without a next attempt",
                    f"{job_id}@{scheduled}: #{last.attempt} {last.status}",
                )
            for run in attempts:
                if run.started_at and run.completed_at and run.completed_at < run.started_at:
                    self.report.add("I6 ended before it started", f"{job_id}@{scheduled}")

    # figures ------------------------------------------------------------------------------

    def figures(self) -> None:
        status = Counter(r.status for r in self.s.runs)
        lags = sorted(
            (e.started - e.scheduled_for).total_seconds() for e in self.executions if e.attempt == 1
        )
        unexplained = sum(
            1 for r in self.s.runs if self._lost_mid_run(r) and self._lease_loss_cause(r) is None
        )
        self.report.stats.update(
            leases_lost_without_fault=unexplained,
            accepted=len(self.book.jobs),
            fires=len(self.s.fires),
            runs=len(self.s.runs),
            executions=len(self.executions),
            run_status=dict(sorted(status.items())),
            impaired_windows=len(self.windows),
        )
        if lags:
            self.report.stats["lag_p50_ms"] = round(lags[len(lags) // 2] * 1000, 1)
            self.report.stats["lag_max_ms"] = round(lags[-1] * 1000, 1)


def check(
    db: Db,
    book: JobBook,
    executions: Sequence[Execution] | Callable[[], Sequence[Execution]],
    faults: Sequence[Fault],
    cutoff: datetime,
    *,
    bad_ledger_lines: Sequence[str] | Callable[[], Sequence[str]] = (),
    probe_jobs: Iterable[str] | None = None,
    context: str = "",
) -> Report:
    reader = executions if callable(executions) else None
    given: Sequence[Execution] = [] if callable(executions) else executions
    checker = Checker(
        db=db, book=book, executions=given,
        faults=faults, cutoff=cutoff, read_executions=reader,
        bad_ledger_lines=() if callable(bad_ledger_lines) else bad_ledger_lines,
        read_bad_lines=bad_ledger_lines if callable(bad_ledger_lines) else None,
        probe_jobs=None if probe_jobs is None else frozenset(probe_jobs),
    )  # fmt: skip
    report = checker.run()
    report.context = context
    return report


def wait_settled(db: Db, cutoff: datetime, timeout: float) -> bool:
    """Until every fire due up to ``cutoff`` is claimed and none of its attempts is open."""

    def settled() -> bool:
        open_count = db.try_fetchval(
            "SELECT (SELECT count(*) FROM jobs WHERE next_fire_at <= $1)"
            " + (SELECT count(*) FROM job_runs WHERE scheduled_for <= $1"
            " AND status IN ('QUEUED', 'RUNNING'))",
            cutoff,
        )
        return open_count is not None and int(open_count) == 0  # None: unreachable

    return bool(wait_for(settled, timeout, interval=0.25))


def _member(worker_id: str | None) -> str | None:
    """The member (supervisor) name of a lease owner: ``worker-1#<incarnation>`` -> ``worker-1``."""
    return None if worker_id is None else worker_id.split("#", 1)[0]
