"""Result types, and the settings every scenario reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tests.support.metrics import MetricSelector


@dataclass(frozen=True, slots=True)
class Goal:
    """A target a metric's value must meet: ``value >= threshold`` or ``value <= threshold``."""

    op: Literal[">=", "<="]
    threshold: float

    def met(self, value: float) -> bool:
        return value >= self.threshold if self.op == ">=" else value <= self.threshold

    def __str__(self) -> str:
        threshold = self.threshold
        text = f"{threshold:,.0f}" if threshold == int(threshold) else f"{threshold:,g}"
        return f"{self.op} {text}"


@dataclass(slots=True)
class Metric:
    """One figure of one scenario run."""

    name: str
    value: float | None
    unit: str
    goal: Goal | None = None

    def passed(self) -> bool | None:
        """None when there is no goal or no value."""
        if self.goal is None or self.value is None:
            return None
        return self.goal.met(self.value)


@dataclass(slots=True)
class ScenarioRun:
    """The outcome of one run of one scenario."""

    scenario: str
    metrics: list[Metric] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def add(self, name: str, value: float | None, unit: str, goal: Goal | None = None) -> None:
        self.metrics.append(Metric(name, value, unit, goal))


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSize:
    """Processes per role of a distributed target."""

    api: int = 2
    pickers: int = 2
    workers: int = 3
    coordinators: int = 2

    def as_dict(self) -> dict[str, int]:
        return {
            "api": self.api,
            "pickers": self.pickers,
            "workers": self.workers,
            "coordinators": self.coordinators,
        }


DEFAULT_FUTURE_SIZES = (0, 10_000, 100_000, 1_000_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every knob of a benchmark run (``python -m bench`` flags), for every profile."""

    http_jobs: int = 20_000
    http_clients: int = 16
    batch_jobs: int = 50_000
    batch_size: int = 1_000
    batch_clients: int = 4
    latency_jobs: int = 500
    latency_rate: float = 50.0
    firelag_jobs: int = 2_000
    firelag_lead_s: float = 3.0
    ceiling_requests: int = 60_000
    poll_interval_s: float = 0.05
    timeline_interval_s: float = 0.25
    timeout_s: float = 600.0
    completed_metric: MetricSelector = field(
        default_factory=lambda: MetricSelector("jobs_executed_total", {"status": "success"})
    )
    fire_lag_metric: str = "job_fire_lag_seconds"
    verify: bool = True
    repeat: int = 1
    keep_data: bool = False
    # the distributed profile
    cluster: ClusterSize = field(default_factory=ClusterSize)
    future_sizes: tuple[int, ...] = DEFAULT_FUTURE_SIZES
    future_jobs: int = 20_000
    failover_rounds: int = 3
    pg_sample_s: float = 0.0
    pg_statements: bool = False
    idle_s: float = 2.0
    backends: tuple[str, ...] = ()
    """``--backends``: every distributed run is made twice, alternately: on PostgreSQL alone
    and with these seed-shaped backends (``chronoq cluster up --with``); rows of the second
    are keyed ``scenario[stack]``."""
    warmup_jobs: int = 5_000
    fresh_pass: bool = False
    """``--fresh-pass``: no warm-up; every scenario runs twice on its target (fresh, warm)."""
