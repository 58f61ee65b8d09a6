"""Result types shared by the scenarios and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


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
