"""The scale model: throughput and fire lag predicted from CPU cost per job, per part.

Every part of a job's path costs CPU: the api (parse, validate, insert), the picker (fire),
the worker (claim, run, record) and PostgreSQL (each statement). Measured per job by
``bench.drivers.scale`` (``batch``: the whole path; ``storm``: a fire, without the api),
those costs predict:

* **on the measuring machine**, where every process shares its cores: jobs/s = the cores
  left to Chronoq (all, less the load generator's and other processes') / the sum of the
  costs. Checked against what was measured: that is what makes the model believable;
* **scaled out**, one core per role process and PostgreSQL's primaries ``K`` of ``P``
  cores each, the jobs distributed by shard id (Citus-style): jobs/s = the smallest of
  ``n_api / c_api``, ``n_pickers / c_picker``, ``n_workers / c_worker`` and
  ``K · P / c_postgres``; pickers stop adding beyond the shard count (one owner per
  shard). An upper bound: it takes a primary's cores to add up linearly, which WAL
  insertion and commit flushes (serial within a primary) do not quite allow, and a 2-core
  machine cannot measure how far they fall short;
* **fire lag** of ``B`` fires due at one instant: the last one starts about ``B / F``
  after it, ``F`` the fire rate from the same formula with the storm's costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("api", "picker", "worker", "coordinator")
PARTS = (*ROLES, "postgres")
SHARDS = 256


@dataclass(frozen=True, slots=True)
class Costs:
    """CPU milliseconds per job (or per fire) of each part."""

    ms: Mapping[str, float]

    @staticmethod
    def of(metrics: Mapping[str, float | None]) -> Costs:
        """From a run's (or a median's) ``CPU per job: <part>`` metrics."""
        return Costs({p: metrics.get(f"CPU per job: {p}") or 0.0 for p in PARTS})

    @property
    def total_ms(self) -> float:
        return sum(self.ms.values())

    def limit(self, part: str, cores: float) -> float:
        """Jobs/s that ``cores`` of ``part`` can do (infinite if it costs nothing)."""
        cost = self.ms.get(part, 0.0)
        return float("inf") if cost <= 0 else cores * 1000.0 / cost


def on_shared_cores(costs: Costs, cores: float) -> float:
    """Jobs/s when every part shares ``cores`` (the measuring machine)."""
    return cores * 1000.0 / costs.total_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """Role processes (one core each) and PostgreSQL primaries."""

    api: int
    pickers: int
    workers: int
    primaries: int = 1
    primary_cores: int = 8


def scaled_out(costs: Costs, d: Deployment) -> tuple[float, str]:
    """Predicted jobs/s of ``d`` and the part that bounds it."""
    limits = {
        "api": costs.limit("api", d.api),
        "picker": costs.limit("picker", min(d.pickers, SHARDS)),
        "worker": costs.limit("worker", d.workers),
        "postgres": costs.limit("postgres", d.primaries * d.primary_cores),
    }
    part = min(limits, key=lambda k: limits[k])
    return limits[part], part


def balanced(costs: Costs, primaries: int, primary_cores: int) -> Deployment:
    """The fewest role processes that keep ``primaries`` busy (none the bottleneck)."""
    target = costs.limit("postgres", primaries * primary_cores)

    def processes(part: str) -> int:
        cost = costs.ms.get(part, 0.0)
        return max(1, -int(-target * cost // 1000.0))  # ceil(target * cost / 1000)

    return Deployment(
        api=processes("api"), pickers=min(processes("picker"), SHARDS),
        workers=processes("worker"), primaries=primaries, primary_cores=primary_cores,
    )  # fmt: skip


def storm_seconds(fires: int, rate: float) -> float:
    """How long after the instant the last of ``fires`` due at once starts, at ``rate``."""
    return fires / rate
