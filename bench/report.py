"""Aggregate repeated runs (median), print the table, write the JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.model import Goal, ScenarioRun
from bench.stats import median


def aggregate(runs: Sequence[ScenarioRun]) -> list[dict[str, Any]]:
    """One row per metric: the median over runs that produced a value, and each run's value."""
    order: list[str] = []
    values: dict[str, list[float | None]] = {}
    meta: dict[str, tuple[str, Goal | None]] = {}
    for run in runs:
        for metric in run.metrics:
            if metric.name not in values:
                order.append(metric.name)
                values[metric.name] = []
                meta[metric.name] = (metric.unit, metric.goal)
            values[metric.name].append(metric.value)
    rows = []
    for name in order:
        unit, goal = meta[name]
        present = [v for v in values[name] if v is not None]
        value = median(present)
        passed = None if goal is None or value is None else goal.met(value)
        rows.append(
            {
                "metric": name,
                "unit": unit,
                "median": value,
                "runs": values[name],
                "goal": str(goal) if goal else None,
                "pass": passed,
            }
        )
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) >= 1:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def render_ratios(results: dict[str, dict[str, Any]]) -> str:
    """For every ``scenario[variant]``: each metric's median over the base scenario's."""
    lines = []
    for key, result in results.items():
        if not key.endswith("]") or "[" not in key:
            continue
        base_key, variant = key[:-1].split("[", 1)
        if "fresh" in variant.split(","):
            continue  # fresh / warm has its own section (bench.passes)
        base = {row["metric"]: row["median"] for row in results.get(base_key, {}).get("rows", [])}
        for row in result["rows"]:
            ref = base.get(row["metric"])
            if ref and row["median"] is not None:
                lines.append(f"{base_key}  {row['metric']}: {variant} / base ="
                             f" {row['median'] / ref:.2f}x")  # fmt: skip
    return "\n".join(lines)


def render_table(results: dict[str, dict[str, Any]]) -> str:
    header = ("scenario", "metric", "value", "unit", "goal", "result", "runs")
    lines: list[tuple[str, ...]] = [header]
    for scenario, result in results.items():
        if result.get("errors"):
            lines.append(
                (
                    scenario,
                    "ERROR",
                    "",
                    "",
                    "",
                    "FAIL",
                    "; ".join(e.splitlines()[0] for e in result["errors"])[:120],
                )
            )
        for row in result["rows"]:
            verdict = {None: "", True: "pass", False: "FAIL"}[row["pass"]]
            runs = " ".join(_fmt(v) for v in row["runs"]) if len(row["runs"]) > 1 else ""
            lines.append(
                (
                    scenario,
                    row["metric"],
                    _fmt(row["median"]),
                    row["unit"],
                    row["goal"] or "",
                    verdict,
                    runs,
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        cells = [
            cell.rjust(widths[i]) if i == 2 else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _meminfo_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info(event_loop: str) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "mem_gib": _meminfo_gib(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_generator_event_loop": event_loop,
        "git_commit": _git_commit(),
    }


def run_to_dict(run: ScenarioRun) -> dict[str, Any]:
    data = asdict(run)
    for metric in data["metrics"]:
        goal = metric["goal"]
        metric["goal"] = f"{goal['op']} {goal['threshold']}" if goal else None
    return data


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
