"""The scale model's arithmetic (``bench.drivers.scale_model``): which part bounds a
deployment, and the smallest deployment that keeps PostgreSQL busy."""

from __future__ import annotations

import math

import pytest

from bench.drivers.scale_model import (
    SHARDS,
    Costs,
    Deployment,
    balanced,
    on_shared_cores,
    scaled_out,
    storm_seconds,
)

COSTS = Costs({"api": 0.03, "picker": 0.02, "worker": 0.04, "coordinator": 0.0, "postgres": 0.1})


def test_costs_come_from_a_runs_cpu_metrics() -> None:
    metrics = {"CPU per job: api": 0.5, "CPU per job: postgres": 2.0, "CPU per job: all": 9.0}
    costs = Costs.of(metrics)
    assert costs.ms == {"api": 0.5, "picker": 0.0, "worker": 0.0, "coordinator": 0.0,
                        "postgres": 2.0}  # fmt: skip
    assert costs.total_ms == 2.5
    assert costs.limit("picker", 4) == math.inf


def test_on_shared_cores_divides_the_cores_by_the_whole_path() -> None:
    assert on_shared_cores(COSTS, 1.9) == pytest.approx(1.9 * 1000 / 0.19)


@pytest.mark.parametrize(
    ("deployment", "bound", "jobs_s"),
    [
        (Deployment(api=1, pickers=8, workers=8, primaries=8), "api", 1000 / 0.03),
        (Deployment(api=8, pickers=8, workers=1, primaries=8), "worker", 1000 / 0.04),
        (Deployment(api=8, pickers=8, workers=8, primaries=1, primary_cores=2), "postgres",
         2 * 1000 / 0.1),
    ],
)  # fmt: skip
def test_the_slowest_part_bounds_a_deployment(
    deployment: Deployment, bound: str, jobs_s: float
) -> None:
    value, part = scaled_out(COSTS, deployment)
    assert value == pytest.approx(jobs_s)
    assert part == bound


def test_pickers_beyond_the_shard_count_add_nothing() -> None:
    costs = Costs({"picker": 1.0, "postgres": 0.0001})
    value, part = scaled_out(costs, Deployment(api=10**6, pickers=SHARDS * 4, workers=10**6))
    assert value == pytest.approx(SHARDS * 1000.0)
    assert part == "picker"


@pytest.mark.parametrize("primaries", [1, 3, 16])
def test_balanced_is_the_smallest_deployment_postgres_bounds(primaries: int) -> None:
    d = balanced(COSTS, primaries, 8)
    jobs_s, bound = scaled_out(COSTS, d)
    assert jobs_s == pytest.approx(primaries * 8 * 1000 / 0.1)
    assert bound == "postgres"
    for role, field in (("api", "api"), ("picker", "pickers"), ("worker", "workers")):
        fewer = Deployment(**{**_fields(d), field: getattr(d, field) - 1})
        assert scaled_out(COSTS, fewer)[1] == role, field


def test_a_storm_takes_its_fires_over_the_rate() -> None:
    assert storm_seconds(100_000, 20_000.0) == 5.0


def _fields(d: Deployment) -> dict[str, int]:
    return {"api": d.api, "pickers": d.pickers, "workers": d.workers,
            "primaries": d.primaries, "primary_cores": d.primary_cores}  # fmt: skip
