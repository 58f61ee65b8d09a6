"""What a scenario runs against: a ``Target``, and the ``Profile`` that makes targets.

A scenario is written once against ``Target``: it sends its load to ``api_ports``,
measures CPU with ``cpu()``, waits for completion with ``wait_completed`` and reads
run times with ``first_runs``. Two profiles implement it:

* ``embedded`` (``bench.embedded``): one ``chronoq up`` (or ``--url``), observed
  over HTTP (``/metrics``, ``/v1``) and ``/proc``;
* ``distributed`` (``bench.cluster``): role processes over a private PostgreSQL,
  observed in the store (asyncpg) and ``/proc`` per role.

A ``Profile`` holds what lives for the whole benchmark (the PostgreSQL server) and
hands out a fresh target for every scenario run.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bench.cpu import CpuSample
from bench.model import ScenarioRun, Settings

CounterPair = tuple[dict[str, int], dict[str, int]]
"""``Target.counters()`` before and after a throughput run."""


@dataclass(frozen=True, slots=True)
class RunTimes:
    """A job's first run, as epoch seconds (None: not set yet)."""

    scheduled_for: float | None
    triggered_at: float | None
    started_at: float | None
    completed_at: float | None
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """When a wait for completion ended (perf_counter), and how many polls it took."""

    done_at: float
    polls: int
    executed_at: float | None = None
    """When the first completion signal alone was met (before persistence was checked)."""


class Target(Protocol):
    """A running Chronoq under test."""

    @property
    def kind(self) -> str:
        """The profile's name: ``embedded`` or ``distributed``."""
        ...

    @property
    def host(self) -> str: ...

    @property
    def server_name(self) -> str:
        """How the part under test is named in metric names (``server``, ``cluster``)."""
        ...

    @property
    def throughput_goals(self) -> bool:
        """Whether the throughput goals of ``docs/benchmarks.md`` apply."""
        ...

    @property
    def on_postgres(self) -> bool:
        """Whether the store is PostgreSQL (its light-load latency goal is 5 ms, not 10)."""
        ...

    @property
    def timeline_min_interval_s(self) -> float: ...

    @property
    def workers(self) -> int:
        """Worker processes (the fire-lag spread is reported when there are several)."""
        ...

    @property
    def api_ports(self) -> list[int]: ...

    def cpu(self) -> CpuSample:
        """CPU so far of every part under test (cheap: /proc only)."""
        ...

    async def completed(self) -> float:
        """COMPLETED runs so far, of every user."""
        ...

    async def wait_completed(
        self, total: float, user: str, *, deadline: float, interval_s: float
    ) -> Completion:
        """Poll until ``completed() >= total`` and nothing of ``user`` is still to run."""
        ...

    async def counters(self) -> dict[str, int]:
        """Engine counters read around a throughput run (``{}`` where there are none)."""
        ...

    def measuring(
        self, run: ScenarioRun, jobs: int
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Wraps the measured part of a throughput run (engine statistics, samplers)."""
        ...

    async def timeline_point(self, baseline: float) -> dict[str, Any]:
        """What the throughput timeline records besides responses and CPU."""
        ...

    async def first_runs(self, user: str, job_ids: Sequence[str]) -> dict[str, RunTimes]:
        """The first run of each job (jobs without one are absent)."""
        ...

    async def completed_jobs(self, user: str) -> int:
        """The user's jobs whose status is COMPLETED."""
        ...

    async def fire_lag_histogram(self) -> dict[str, Any] | None:
        """The server's own fire-lag histogram totals, where it can be read."""
        ...

    def resource_metrics(
        self,
        run: ScenarioRun,
        jobs: int,
        cpu: dict[str, Any],
        counters: CounterPair,
    ) -> None:
        """Add the CPU, I/O and engine figures of a throughput run, per job."""
        ...

    def annotate(self, run: ScenarioRun) -> None:
        """Add what the target knows about itself (set-up, idle CPU) to a finished run."""
        ...


class Profile(Protocol):
    """Makes a fresh target for every scenario run."""

    name: str

    def session(self) -> contextlib.AbstractAsyncContextManager[None]:
        """What lives for the whole benchmark (entered once, exited on any outcome)."""
        ...

    def target(self, scenario: Scenario) -> contextlib.AbstractAsyncContextManager[Target]: ...

    def variants(self) -> tuple[str, ...]:
        """Names of the set-ups each run is made on, alternately ("" = the profile's own);
        ``use`` picks the one the next ``target`` builds."""
        ...

    def use(self, variant: str) -> None: ...

    def describe(self) -> dict[str, Any]:
        """Facts about the profile for the JSON document."""
        ...

    def notes(self) -> str | None:
        """Lines printed above the table."""
        ...


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario, written once: ``run(target, settings)`` for every profile it names."""

    name: str
    run: Callable[[Any, Settings], Awaitable[ScenarioRun | list[ScenarioRun]]]
    """Gets a ``Target`` (None when ``needs_target`` is false); returns its run(s)."""
    profiles: frozenset[str] = frozenset({"embedded", "distributed"})
    needs_target: bool = True
    warm: bool = True
    """Distributed: warm a fresh cluster up before the scenario (see ``bench.cluster``)."""
    repeat: Literal["each", "inside", "once"] = "each"
    """``each``: ``--repeat`` fresh targets; ``inside``: the scenario repeats on its one
    target; ``once``: one run whatever ``--repeat`` says."""


@contextlib.asynccontextmanager
async def nothing() -> AsyncIterator[None]:
    yield


def new_user(scenario: str) -> str:
    """A fresh ``X-User-ID`` per scenario run: its jobs can be counted apart."""
    return f"bench-{scenario}-{uuid.uuid4().hex[:8]}"
