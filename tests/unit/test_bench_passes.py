"""The benchmark's per-pair accounting: fresh / warm (``bench.passes``) and Chronoq / floor
(``bench.floor.ratios``) ratios, and PostgreSQL's work per job (``bench.pgwork``)."""

from __future__ import annotations

import pytest

from bench import pgwork
from bench.floor import ratios
from bench.model import ScenarioRun
from bench.passes import fresh_ratios, median_ratio, pass_key
from bench.report import aggregate


def _run(scenario: str, **metrics: float | None) -> ScenarioRun:
    run = ScenarioRun(scenario)
    for name, value in metrics.items():
        run.add(name, value, "")
    return run


def _batch(jobs_s: float, pg_cpu: float) -> ScenarioRun:
    run = ScenarioRun("batch")
    run.add("end-to-end throughput", jobs_s, "jobs/s")
    run.add("CPU per job: postgres", pg_cpu, "ms")
    return run


def test_pass_keys() -> None:
    assert pass_key("batch", "", False) == "batch"
    assert pass_key("batch", "", True) == "batch[fresh]"
    assert pass_key("batch", "stack", False) == "batch[stack]"
    assert pass_key("batch", "stack", True) == "batch[stack,fresh]"


def test_fresh_ratios_pair_the_ith_fresh_run_with_the_ith_warm_run() -> None:
    collected = {
        "batch[fresh]": [_batch(800, 0.2), _batch(900, 0.1)],
        "batch": [_batch(1000, 0.1), _batch(1000, 0.1)],
    }
    out = fresh_ratios(collected)
    assert list(out) == ["batch fresh / warm"]
    runs = out["batch fresh / warm"]
    assert median_ratio(runs, "end-to-end jobs/s: fresh / warm") == pytest.approx(0.85)
    assert [r.metrics[0].value for r in runs] == pytest.approx([0.8, 0.9])
    assert [r.metrics[0].passed() for r in runs] == [True, True]  # goal >= 0.8
    assert median_ratio(runs, "PostgreSQL CPU per job: fresh / warm") == pytest.approx(1.5)
    rows = {row["metric"]: row for row in aggregate(runs)}
    assert rows["end-to-end jobs/s: fresh / warm"]["pass"] is True


def test_a_fresh_run_slower_than_the_goal_fails_and_errors_are_skipped() -> None:
    failed = ScenarioRun("batch", error="boom")
    collected = {
        "batch[fresh]": [_batch(700, 0.1), failed],
        "batch": [_batch(1000, 0.1), _batch(1000, 0.1)],
    }
    runs = fresh_ratios(collected)["batch fresh / warm"]
    assert len(runs) == 1  # the pair with an error has no ratio
    assert runs[0].metrics[0].value == pytest.approx(0.7)
    assert runs[0].metrics[0].passed() is False


def test_latency_ratios_and_variants() -> None:
    fresh = _run("latency", **{"start - created_at p99": 6.0, "start - created_at p50": 2.0})
    warm = _run("latency", **{"start - created_at p99": 4.0, "start - created_at p50": 2.0})
    out = fresh_ratios({"latency[stack,fresh]": [fresh], "latency[stack]": [warm]})
    (run,) = out["latency[stack] fresh / warm"]
    values = {m.name: (m.value, m.passed()) for m in run.metrics}
    assert values["start - created_at p99: fresh / warm"] == (pytest.approx(1.5), False)
    assert values["start - created_at p50: fresh / warm"] == (pytest.approx(1.0), None)
    assert "start - client send p99: fresh / warm" not in values  # neither run has it


def test_warm_runs_without_a_fresh_pass_give_no_ratio() -> None:
    assert fresh_ratios({"batch": [_batch(1, 1)], "batch[stack]": [_batch(1, 1)]}) == {}


def test_floor_ratios_for_both_passes() -> None:
    floor = ScenarioRun("floor")
    floor.add("end-to-end throughput", 10_000, "jobs/s")
    floor.add("CPU per job: postgres", 0.01, "ms")
    collected = {
        "batch": [_batch(1000, 0.08)],
        "floor": [floor],
        "batch[fresh]": [_batch(500, 0.08)],
        "floor[fresh]": [floor],
    }
    out = ratios(collected)
    (warm,) = out["batch / floor"]
    (fresh,) = out["batch[fresh] / floor[fresh]"]
    assert warm.metrics[0].value == pytest.approx(0.1)
    assert warm.metrics[0].passed() is False  # goal >= 0.6
    assert fresh.metrics[0].value == pytest.approx(0.05)
    assert warm.metrics[1].value == pytest.approx(8.0)


def test_work_per_job_from_the_deltas() -> None:
    run = ScenarioRun("batch")
    run.raw["pg_work"] = {
        "calls": 50.0,
        "dirtied": 200.0,
        "backend_written": 100.0,
        "background_written": 300.0,
    }
    run.raw["pg_work_statements"] = [
        {"calls": 10, "exec_ms": 5.0, "dirtied": 20, "wal_bytes": 1000}
    ]
    before = {"wal_bytes": 1000, "txid": 10, "wal_sync": 0, "wal_fpi": 0, "xact_commit": 0}
    after = {"wal_bytes": 401_000, "txid": 31, "wal_sync": 0, "wal_fpi": 0, "xact_commit": 0}
    pgwork.add_work_metrics(run, 100, pgwork.counter_deltas((before, after)))
    got = {m.name: m.value for m in run.metrics}
    assert got["PostgreSQL WAL bytes per job"] == 4000
    assert got["PostgreSQL write transactions per job"] == pytest.approx(0.2)  # txid takes one
    assert got["PostgreSQL statements per job"] == pytest.approx(0.5)
    assert got["PostgreSQL buffers dirtied per job"] == pytest.approx(2.0)
    assert got["PostgreSQL buffers written per job"] == pytest.approx(4.0)
    assert run.raw["pg_work_statements"][0]["wal_bytes_per_job"] == pytest.approx(10.0)


def test_work_per_job_without_pg_stat_statements() -> None:
    run = ScenarioRun("batch")
    run.raw["pg_work"] = {"background_written": 3.0}  # the extension was not loaded
    pgwork.add_statement_metrics(run, 10)
    got = {m.name: m.value for m in run.metrics}
    assert got["PostgreSQL statements per job"] is None
    assert got["PostgreSQL buffers written per job"] is None
