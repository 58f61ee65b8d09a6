"""Store contract, property: the fire ledger has exactly one outcome per nominal fire.

Hypothesis draws a recurring schedule (``@every Ns``, cron with seconds), random
policies (overlap, misfire, catch-up window, start deadline, jitter) and a random
sequence of actions on a fake timeline: time advances, picker claims, two workers
claiming, starting and finishing runs (cancelling those whose cancel they learn at
renewal), pause, resume with and without catch-up, manual triggers, and outages
(time jumps with no claim), with or without ``end_at`` / ``max_fires``. Then every
nominal fire of the schedule from the job's first fire up to its next (or held) fire —
or, once the schedule ended, up to its end — is covered by exactly one ledger entry
(spans expanded with the schedule; an uncounted span covers its whole range), and each
manual fire is listed once. Each example uses a new job and purges it at the end, so
one store serves every example. Few examples on SQLite/PostgreSQL, more on memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chronoq.domain.jobs import ClaimedRun, Fire, Job
from chronoq.domain.policies import Misfire, Overlap, Policies
from chronoq.domain.schedules import parse_schedule
from chronoq.domain.states import JOB_TERMINAL, RunStatus
from chronoq.errors import ConflictError
from chronoq.ports.store import Store

from .conftest import Harness
from .helpers import T0, claim_due, claim_runs, fires_of, outcome, policy_job

SCHEDULES = [
    "@every 1s",
    "@every 3s",
    "@every 7s",
    "*/2 * * * * *",
    "*/5 * * * * *",
    "10,20,45 * * * * *",
    "0 * * * * *",
]
WORKERS = ("w1", "w2")
LEASE = timedelta(seconds=30)

Action = tuple[str, float, bool]
"""(kind, amount, flag)."""

ENDS = [T0 + timedelta(seconds=s) for s in (30, 250, 900)]

policies_st = st.builds(
    Policies,
    overlap=st.sampled_from(list(Overlap)),
    misfire=st.sampled_from(list(Misfire)),
    catch_up_window_seconds=st.one_of(st.none(), st.sampled_from([0.5, 5.0, 30.0, 120.0])),
    start_deadline_seconds=st.one_of(st.none(), st.sampled_from([1.0, 4.0, 20.0])),
    jitter_seconds=st.sampled_from([0.0, 0.0, 0.7, 3.0]),
    end_at=st.one_of(
        st.none(), st.sampled_from([T0 + timedelta(seconds=s) for s in (30, 250, 900)])
    ),
    max_fires=st.one_of(st.none(), st.sampled_from([1, 4, 40])),
)

actions_st = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.sampled_from([0.25, 1.0, 2.5, 6.0]), st.just(False)),
        st.tuples(st.just("outage"), st.sampled_from([12.0, 45.0, 200.0]), st.just(False)),
        st.tuples(st.just("claim"), st.just(0.0), st.just(False)),
        st.tuples(st.just("work"), st.sampled_from([0.0, 1.0]), st.booleans()),
        st.tuples(st.just("pause"), st.just(0.0), st.just(False)),
        st.tuples(st.just("resume"), st.just(0.0), st.booleans()),
        st.tuples(st.just("trigger"), st.just(0.0), st.booleans()),
    ),
    min_size=1,
    max_size=30,
)


@dataclass
class World:
    """The fake timeline, and what the two workers hold."""

    store: Store
    job: Job
    now: datetime = T0
    held: dict[str, list[ClaimedRun]] = field(default_factory=lambda: {w: [] for w in WORKERS})
    manual: dict[str, datetime] = field(default_factory=dict)

    async def act(self, kind: str, amount: float, flag: bool) -> None:
        store, job = self.store, self.job
        if kind in ("advance", "outage"):
            self.now += timedelta(seconds=amount)
            if kind == "advance":
                await claim_due(store, self.now)
        elif kind == "claim":
            await claim_due(store, self.now)
        elif kind == "work":
            await self.work(WORKERS[int(amount)], finish=flag)
        elif kind == "pause":
            await store.pause_job(job.user_id, job.job_id, self.now)
        elif kind == "resume":
            await store.resume_job(job.user_id, job.job_id, self.now, catch_up=flag)
        else:
            if not flag:  # off the whole seconds every nominal fire sits on (else: maybe on one)
                self.now += timedelta(microseconds=1)
            try:
                run = await store.trigger_job(job.user_id, job.job_id, self.now)
            except ConflictError:
                current = await store.get_job(job.user_id, job.job_id)
                assert current is not None and current.status in JOB_TERMINAL
                return
            assert run is not None and run.manual
            self.manual[run.run_id] = run.scheduled_for

    async def work(self, worker: str, *, finish: bool) -> None:
        """Renew what ``worker`` holds, claim and start what is available, and with
        ``finish`` report everything it holds (CANCELLED if its cancel was requested)."""
        store = self.store
        held = self.held[worker]
        renewal = await store.extend_leases(worker, [c.run_id for c in held], self.now + LEASE)
        held[:] = [c for c in held if c.run_id in renewal.held]
        claimed = await claim_runs(store, worker, self.now, lease_until=self.now + LEASE)
        started = set(await store.mark_started(worker, [c.run_id for c in claimed], self.now))
        held += [c for c in claimed if c.run_id in started]
        if not finish:
            return
        cancel = set(renewal.cancel)
        outcomes = [
            outcome(
                c,
                RunStatus.CANCELLED if c.run_id in cancel else RunStatus.COMPLETED,
                worker_id=worker,
                started_at=self.now,
                completed_at=self.now,
            )
            for c in held
        ]
        assert all(await store.complete_runs(outcomes))
        held.clear()


def nominal_fires(expression: str, first: datetime, job: Job) -> list[datetime]:
    """The schedule's fires from ``first`` that the job has passed: up to its next (or held)
    fire, or — once the schedule has ended — up to ``end_at`` and ``max_fires``."""
    schedule = parse_schedule(expression, None)
    boundary = job.next_fire_at or job.paused_fire_at
    p = job.policies
    fires: list[datetime] = []
    at: datetime | None = first
    while at is not None:
        if boundary is not None and at >= boundary:
            break
        if boundary is None and (
            (p.end_at is not None and at > p.end_at)
            or (p.max_fires is not None and len(fires) >= p.max_fires)
        ):
            break
        fires.append(at)
        at = schedule.next_after(at)
    return fires


def check_ledger(expression: str, first: datetime, job: Job, ledger: list[Fire]) -> None:
    nominal = nominal_fires(expression, first, job)
    index = {at: i for i, at in enumerate(nominal)}
    covered: Counter[datetime] = Counter()
    for entry in (e for e in ledger if not e.manual):
        assert entry.scheduled_for in index, f"{entry} starts off the schedule"
        assert entry.last_scheduled_for in index, f"{entry} ends off the schedule"
        span = nominal[index[entry.scheduled_for] : index[entry.last_scheduled_for] + 1]
        assert span, f"{entry} is empty"
        if entry.count is not None:
            assert entry.count == len(span), f"{entry} counts {entry.count}, not {len(span)}"
        covered.update(span)
    twice = sorted(at for at, n in covered.items() if n > 1)
    missing = [at for at in nominal if at not in covered]
    assert not twice, f"fires with two ledger entries: {twice[:5]}"
    assert not missing, f"fires with no ledger entry: {missing[:5]} (of {len(missing)})"
    if all(e.count is not None for e in ledger):
        assert job.fire_count == len(nominal)


async def play(store: Store, expression: str, policies: Policies, actions: list[Action]) -> None:
    cron_first = parse_schedule(expression, None).next_after(T0)
    assert cron_first is not None
    # Whole seconds, as every cron fire; an @every schedule is anchored on its first fire.
    first = T0 if expression.startswith("@every") else cron_first
    assume(policies.end_at is None or first <= policies.end_at)  # as first_fire_at would
    job = policy_job(policies, cron=expression, next_fire_at=first)
    await store.insert_jobs([job])
    world = World(store, job)
    try:
        for action in actions:
            await world.act(*action)
        now = await store.get_job(job.user_id, job.job_id)
        assert now is not None
        if now.next_fire_at is None and now.paused_fire_at is None:
            assert policies.end_at is not None or policies.max_fires is not None
        ledger = await fires_of(store, job, T0 - timedelta(days=1), world.now + timedelta(days=1))
        assert [e.scheduled_for for e in ledger] == sorted(e.scheduled_for for e in ledger)
        check_ledger(expression, first, now, ledger)
        manual = {e.run_id: e.scheduled_for for e in ledger if e.manual}
        assert manual == world.manual
        assert all(e.count == 1 for e in ledger if e.manual)
    finally:
        await store.purge_job(job.user_id, job.job_id)


PROPERTY = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(PROPERTY, max_examples=12)
@given(
    expression=st.sampled_from(SCHEDULES),
    policies=policies_st,
    actions=actions_st,
)
async def test_every_nominal_fire_has_exactly_one_ledger_entry(
    harness: Harness, expression: str, policies: Policies, actions: list[Action]
) -> None:
    await play(harness.store, expression, policies, actions)


@settings(PROPERTY, max_examples=150)
@given(
    expression=st.sampled_from(SCHEDULES),
    policies=policies_st,
    actions=actions_st,
)
async def test_every_nominal_fire_has_exactly_one_ledger_entry_many_examples(
    expression: str, policies: Policies, actions: list[Action]
) -> None:
    """The same property, more examples, on the memory store only (the fast tier)."""
    from chronoq.adapters.memory import MemoryStore

    store = MemoryStore()
    await store.start()
    await play(store, expression, policies, actions)
