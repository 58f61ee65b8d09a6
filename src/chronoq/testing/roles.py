"""Every role in-process, on in-memory adapters and a ``FakeClock``.

A ``Stack`` holds one set of backends (``MemoryStore``, ``MemorySubmissionLog``,
``MemoryCoordination``, ``MemoryNotifier``, ``MemoryBlobStore``) and builds
started roles over them::

    async with Stack() as stack:
        coordinator = await stack.coordinator("c1")
        picker = await stack.picker("p1")
        worker = await stack.worker("w1")
        await stack.store.insert_jobs([stack.job("sleep:5s")])
        await stack.clock.advance(1)

Each role reaches the backends through its own ``Link``s, so a test can fail them:

* ``stack.cut(role)`` — the role (and its heartbeat) is cut off from every backend,
  as a crashed or partitioned process is: every call it makes raises
  ``UnavailableError``, and it says no goodbye. ``stack.heal(role)`` undoes it.
* ``stack.outage("store" | "coordination" | "submissions")`` — that backend is down
  for every role; ``stack.restore(...)`` brings it back.
* ``stack.link(role, "store").hold("fence_shards")`` — calls of one method wait until
  the returned event is set (to freeze a role mid-step); ``Link.calls`` counts calls.

``stop(role)`` stops one role gracefully (its heartbeat leaves); leaving the
``async with`` stops every role, letting fake time pass for graceful stops.
Distributed roles (the default) heartbeat into the coordination; ``distributed=
False`` builds the embedded flavour (no membership, no fencing).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from chronoq.adapters.memory import MemoryCoordination, MemoryNotifier
from chronoq.adapters.memory.blob import MemoryBlobStore
from chronoq.adapters.memory.store import MemoryStore
from chronoq.adapters.memory.submissions import MemorySubmissionLog
from chronoq.domain.clock import Clock
from chronoq.domain.durations import parse_go_duration
from chronoq.domain.ids import new_id
from chronoq.domain.jobs import Job, shard_of
from chronoq.domain.policies import DEFAULT_POLICIES, Policies
from chronoq.domain.retry import DEFAULT_MAX_INTERRUPTIONS, RetryPolicy
from chronoq.domain.states import JobStatus
from chronoq.errors import UnavailableError, ValidationError
from chronoq.executors import EchoExecutor, ExecutionRequest, ExecutionResult, ExecutorRegistry
from chronoq.executors.base import timeout_message
from chronoq.observability.metrics import Metrics
from chronoq.ports.coordination import LEASE_OWNER, Coordination, Member
from chronoq.ports.dispatch import Dispatch
from chronoq.ports.jobs import JobStore
from chronoq.ports.notify import FIRES, SUBMISSIONS
from chronoq.ports.submissions import SubmissionLog
from chronoq.services.assignment import AssignmentFollower
from chronoq.services.base import Service
from chronoq.services.coordinator import Coordinator, CoordinatorConfig
from chronoq.services.membership import Heartbeat
from chronoq.services.picker import Picker
from chronoq.services.worker import Worker, WorkerConfig
from chronoq.services.writer import SubmissionMover, Writer, into_log, into_store
from chronoq.testing.clock import FakeClock, settle

__all__ = ["ClockSleepExecutor", "Link", "Stack", "Switch"]

P = TypeVar("P")
R = TypeVar("R", bound=Service)
PORTS = ("store", "coordination", "submissions")
USER = "alice"


class Switch:
    """Up or down; a ``Link`` fails while any of its switches is down."""

    def __init__(self) -> None:
        self.down = False


class Link(Generic[P]):
    """A role's view of one backend: forwards every call, unless a switch is down (then
    coroutine methods raise ``UnavailableError``) or the method is held (see ``hold``)."""

    def __init__(self, target: P, *switches: Switch) -> None:
        self.target = target
        self.switches = switches
        self.calls: Counter[str] = Counter()
        self._holds: dict[str, asyncio.Event] = {}

    @property
    def port(self) -> P:
        """This link, typed as the port it stands for."""
        return cast(P, self)

    @property
    def down(self) -> bool:
        return any(s.down for s in self.switches)

    def hold(self, method: str) -> asyncio.Event:
        """Make calls of ``method`` wait until the returned event is set."""
        return self._holds.setdefault(method, asyncio.Event())

    def _check(self) -> None:
        if self.down:
            raise UnavailableError(f"{type(self.target).__name__} is unreachable (test)")

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.target, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            self._check()
            held = self._holds.get(name)
            if held is not None:
                await held.wait()
                self._check()  # cut off while held: the call never lands
            return await attribute(*args, **kwargs)

        return call


class ClockSleepExecutor:
    """``sleep:<Go duration>`` on the stack's clock (the real one sleeps in real time)."""

    prefix = "sleep:"

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        text = request.payload.removeprefix(self.prefix).strip()
        try:
            seconds = parse_go_duration(text).total_seconds()
        except ValidationError as exc:
            return ExecutionResult(succeeded=False, error=exc.message)
        if seconds > request.timeout_seconds:
            await self._clock.sleep(request.timeout_seconds)
            return ExecutionResult(
                succeeded=False, timed_out=True, error=timeout_message(request.timeout_seconds)
            )
        await self._clock.sleep(seconds)
        return ExecutionResult(succeeded=True, output=f"Slept {text}")


@dataclass
class _Hosted:
    role: Service
    switch: Switch
    links: dict[str, Link[Any]]
    companions: list[Service] = field(default_factory=list)
    """Started before the role, stopped after it (its heartbeat)."""


@dataclass
class Stack:
    """One set of in-memory backends on one fake clock, and the roles built over them."""

    clock: FakeClock = field(default_factory=FakeClock)
    store: MemoryStore = field(default_factory=MemoryStore)
    notifier: MemoryNotifier = field(default_factory=MemoryNotifier)
    blob: MemoryBlobStore = field(default_factory=MemoryBlobStore)
    metrics: Metrics = field(default_factory=Metrics)
    shard_count: int = 16
    member_ttl: float = 3.0
    lease_seconds: float = 30.0
    coordination: MemoryCoordination = field(init=False)
    submissions: MemorySubmissionLog = field(init=False)
    outages: dict[str, Switch] = field(init=False)
    _hosted: list[_Hosted] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.coordination = MemoryCoordination(self.clock, self.notifier)
        self.submissions = MemorySubmissionLog(self.clock)
        self.outages = {port: Switch() for port in PORTS}

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for adapter in (self.store, self.submissions, self.blob, self.notifier, self.coordination):
            await adapter.start()

    async def close(self) -> None:
        """Stop every role still running (newest first), then close the backends."""
        for switch in [*self.outages.values(), *(h.switch for h in self._hosted)]:
            switch.down = False  # let every role stop cleanly
        while self._hosted:
            await self.stop(self._hosted[-1].role)
        for adapter in (self.coordination, self.notifier, self.blob, self.submissions, self.store):
            await adapter.close()

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def stop(self, role: Service) -> None:
        """Stop ``role`` gracefully (then its heartbeat), letting fake time pass meanwhile."""
        hosted = self._find(role)
        self._hosted.remove(hosted)
        for service in [hosted.role, *hosted.companions]:
            task = asyncio.ensure_future(service.stop())
            await self.clock.run_until(task.done, within=3600.0, step=0.5)
            await task

    # -- failures ------------------------------------------------------------------------

    def cut(self, role: Service) -> None:
        """Cut ``role`` off every backend (a crash or a partition: no goodbye)."""
        self._find(role).switch.down = True

    def heal(self, role: Service) -> None:
        self._find(role).switch.down = False

    def outage(self, port: str) -> None:
        """Take one backend down for every role: ``store``, ``coordination``, ``submissions``."""
        self.outages[port].down = True

    def restore(self, port: str) -> None:
        self.outages[port].down = False

    def link(self, role: Service, port: str) -> Link[Any]:
        """The role's view of ``port`` (``store``, ``coordination`` or ``submissions``)."""
        return self._find(role).links[port]

    # -- jobs ----------------------------------------------------------------------------

    def job(
        self,
        payload: str = "hello",
        *,
        due_in: float = 0.0,
        cron: str | None = None,
        user: str = USER,
        max_retries: int = 0,
        policies: Policies = DEFAULT_POLICIES,
    ) -> Job:
        """A new job (not stored) first due ``due_in`` seconds from now."""
        now = self.clock.now()
        job_id = new_id()
        return Job(
            job_id=job_id, user_id=user, project_id="p", payload=payload, payload_ref=None,
            payload_size=len(payload.encode()), cron_schedule=cron,
            timezone="UTC" if cron else None, next_fire_at=now + timedelta(seconds=due_in),
            shard_id=shard_of(job_id, self.shard_count), status=JobStatus.PENDING,
            max_retries=max_retries, timeout_seconds=None, created_at=now, updated_at=now,
            policies=policies,
        )  # fmt: skip

    # -- roles ---------------------------------------------------------------------------

    async def picker(
        self,
        owner: str = "picker-1",
        *,
        distributed: bool = True,
        lookahead: float = 0.5,
        dispatch_rate: float = math.inf,
        batch: int = 1000,
        user_max_fires_per_minute: int = 0,
    ) -> Picker:
        """A started picker; distributed: a heartbeating member following its assignment."""
        switch, links = self._links()
        follower = None
        if distributed:
            follower = AssignmentFollower(links["coordination"].port, owner, self.clock)
        picker = Picker(
            links["store"].port, self.notifier, self.clock, self.metrics,
            lookahead=lookahead, assignment=follower, batch=batch, dispatch_rate=dispatch_rate,
            user_max_fires_per_minute=user_max_fires_per_minute,
        )  # fmt: skip
        beat = [self._heartbeat(links, owner, "picker")] if distributed else []
        return await self._host(picker, switch, links, beat)

    async def coordinator(
        self,
        node_id: str = "coordinator-1",
        *,
        distributed: bool = True,
        leader_ttl: float = 3.0,
        retention_hours: float = 0.0,
        max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS,
        retry: RetryPolicy | None = None,
        recover_orphans: bool | None = None,
    ) -> Coordinator:
        """A started coordinator (leader candidate; embedded: the only node)."""
        switch, links = self._links()
        store = links["store"].port
        config = CoordinatorConfig(
            node_id=node_id, lease_seconds=self.lease_seconds,
            retry=retry or RetryPolicy(base_seconds=0.0, cap_seconds=0.0),
            recover_orphans=not distributed if recover_orphans is None else recover_orphans,
            distributed=distributed, leader_ttl=leader_ttl, member_ttl=self.member_ttl,
            shard_count=self.shard_count, retention_hours=retention_hours,
            max_interruptions=max_interruptions,
        )  # fmt: skip
        coordinator = Coordinator(
            cast(Dispatch, store), cast(JobStore, store), self.blob, self.notifier,
            links["coordination"].port, self.clock, self.metrics, config,
        )  # fmt: skip
        beat = [self._heartbeat(links, node_id, "coordinator")] if distributed else []
        return await self._host(coordinator, switch, links, beat)

    async def worker(
        self,
        worker_id: str = "worker-1",
        *,
        member_id: str | None = None,
        distributed: bool = True,
        registry: ExecutorRegistry | None = None,
        **config: Any,
    ) -> Worker:
        """A started worker (``config``: ``WorkerConfig`` fields). Its default executors:
        ``sleep:`` on the fake clock, echo for anything else. With ``member_id`` it is a
        member under that id and claims as ``worker_id`` (announced as its lease owner), as
        a process restarted under the same ``--node-id`` does; else both are ``worker_id``."""
        switch, links = self._links()
        if registry is None:
            registry = ExecutorRegistry(EchoExecutor())
            registry.register(ClockSleepExecutor(self.clock))
        config.setdefault("lease_seconds", self.lease_seconds)
        worker = Worker(
            links["store"].port, self.blob, self.notifier, self.clock, self.metrics, registry,
            WorkerConfig(worker_id=worker_id, **config),
        )  # fmt: skip
        info = {} if member_id is None else {LEASE_OWNER: worker_id}
        member = member_id or worker_id
        beat = [self._heartbeat(links, member, "worker", info)] if distributed else []
        return await self._host(worker, switch, links, beat)

    async def writer(self, *, buffered: bool = False, max_active_per_user: int = 0) -> Writer:
        """The api's group-committing writer: into the store (``max_active_per_user``: the
        per-user active-jobs limit), or (``buffered``) the log."""
        switch, links = self._links()
        if buffered:
            log = cast(SubmissionLog, links["submissions"].port)
            writer = Writer(into_log(log), self.notifier, self.clock, channel=SUBMISSIONS)
        else:
            jobs = cast(JobStore, links["store"].port)
            insert = into_store(jobs, max_active_per_user=max_active_per_user)
            writer = Writer(insert, self.notifier, self.clock, channel=FIRES)
        return await self._host(writer, switch, links, [])

    async def mover(self, consumer: str = "writer-1", **options: Any) -> SubmissionMover:
        """A started writer process of buffered ingestion (``options``: batch, hold)."""
        switch, links = self._links()
        mover = SubmissionMover(
            links["submissions"].port, links["store"].port, self.notifier, self.clock,
            self.metrics, consumer=consumer, **options,
        )  # fmt: skip
        return await self._host(mover, switch, links, [])

    # -- plumbing ------------------------------------------------------------------------

    def _links(self) -> tuple[Switch, dict[str, Link[Any]]]:
        switch = Switch()
        targets: dict[str, Any] = {
            "store": self.store, "coordination": self.coordination, "submissions": self.submissions,
        }  # fmt: skip
        return switch, {p: Link(t, self.outages[p], switch) for p, t in targets.items()}

    def _heartbeat(
        self,
        links: dict[str, Link[Any]],
        member_id: str,
        role: str,
        info: dict[str, str] | None = None,
    ) -> Heartbeat:
        member = Member(member_id=member_id, role=role, host="stack", pid=0, info=info or {})
        coordination = cast(Coordination, links["coordination"].port)
        return Heartbeat(coordination, member, self.clock, ttl=self.member_ttl)

    async def _host(
        self, role: R, switch: Switch, links: dict[str, Link[Any]], companions: Sequence[Service]
    ) -> R:
        for companion in companions:
            await companion.start()
        await role.start()
        self._hosted.append(_Hosted(role, switch, links, list(companions)))
        await settle()
        return role

    def _find(self, role: Service) -> _Hosted:
        for hosted in self._hosted:
            if hosted.role is role:
                return hosted
        raise ValueError(f"{role!r} is not running in this stack")
