"""Draw the scale measurements and the model's predictions (docs/scale.md's figures).

``python -m bench.drivers.scale_plot RESULTS.json [--out docs/img] [--cores 2]``

``RESULTS.json`` is what ``python -m bench.drivers.scale`` wrote. Draws
``scale-pending.png`` (jobs/s, fire rate and fire lag against pending jobs),
``scale-roles.png`` (the same against role processes, with the model's prediction for the
measuring machine) and ``scale-out.png`` (the model scaled out over PostgreSQL primaries),
and prints the tables docs/scale.md quotes. Needs matplotlib (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.drivers.scale_model import (
    PARTS,
    Costs,
    balanced,
    on_shared_cores,
    scaled_out,
    storm_seconds,
)
from bench.stats import median

Point = dict[str, Any]
PRIMARIES = (1, 2, 4, 8, 16, 32)
PRIMARY_CORES = 8
STORM_FIRES = 1_000_000


def run_metrics(point: Point, scenario: str) -> Iterator[dict[str, float | None]]:
    for run in point["runs"]:
        if run["scenario"] == scenario and not run.get("error"):
            yield {m["name"]: m["value"] for m in run["metrics"]}


def med(point: Point, scenario: str, metric: str) -> float | None:
    return median([v for m in run_metrics(point, scenario) if (v := m.get(metric)) is not None])


def predicted(point: Point, scenario: str, machine_cores: float) -> float | None:
    """The model on the measuring machine, run by run: cores left to Chronoq / its costs."""
    values = []
    for m in run_metrics(point, scenario):
        left = machine_cores - (m.get("cores: load generator") or 0.0)
        left -= max(m.get("other processes (avg cores)") or 0.0, 0.0)
        values.append(on_shared_cores(Costs.of(m), left))
    return median(values)


def median_costs(points: Sequence[Point], scenario: str) -> Costs:
    runs = [Costs.of(m).ms for p in points for m in run_metrics(p, scenario)]
    return Costs({part: median([ms[part] for ms in runs]) or 0.0 for part in PARTS})


def grouped(points: Sequence[Point], key: str, along: str) -> dict[int, list[Point]]:
    """Points by ``key`` (a curve each), each curve in ``along`` order (its x axis)."""
    out: dict[int, list[Point]] = {}
    for p in sorted(points, key=lambda p: p[along]):
        out.setdefault(p[key], []).append(p)
    return out


def spread(point: Point, scenario: str, metric: str) -> tuple[float, float, float]:
    """Median, and its distance to the lowest and the highest run (for error bars)."""
    values = [v for m in run_metrics(point, scenario) if (v := m.get(metric)) is not None]
    middle = median(values) or 0.0
    return middle, middle - min(values, default=middle), max(values, default=middle) - middle


def _series(axis: Any, xs: Sequence[float], points: Sequence[Point], scenario: str,
            metric: str, label: str, style: str = "o-") -> Any:  # fmt: skip
    stats = [spread(p, scenario, metric) for p in points]
    return axis.errorbar(
        xs, [s[0] for s in stats], yerr=[[s[1] for s in stats], [s[2] for s in stats]],
        fmt=style, capsize=3, label=label,
    )  # fmt: skip


PANELS = (
    ("batch", "end-to-end throughput", "batch, end to end (jobs/s)"),
    ("storm", "fire rate", "storm: fires/s until the last start"),
    ("storm", "fire lag p99", "storm: fire lag p99 (ms)"),
    ("batch", "CPU per job: postgres", "PostgreSQL CPU per job, batch (ms)"),
)


def plot_pending(plt: Any, points: Sequence[Point], out: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for n, series in grouped(points, "roles", "pending").items():
        xs = [p["pending"] for p in series]
        for axis, (scenario, metric, _) in zip(axes.flat, PANELS, strict=True):
            _series(axis, xs, series, scenario, metric, f"{n} of each role")
    for axis, (_, _, title) in zip(axes.flat, PANELS, strict=True):
        axis.set_title(title, fontsize=10)
        axis.set_xscale("symlog", linthresh=1_000_000)
        axis.set_xlim(left=-100_000)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    for axis in axes[1]:
        axis.set_xlabel("pending jobs in the store")
    fig.suptitle("Against pending jobs: medians, bars from the lowest to the highest run")
    fig.tight_layout()
    fig.savefig(out / "scale-pending.png", dpi=110)


def plot_roles(plt: Any, points: Sequence[Point], cores: float, out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for pending, series in grouped(points, "pending", "roles").items():
        ns = [p["roles"] for p in series]
        for axis, scenario, metric in (
            (axes[0], "batch", "end-to-end throughput"),
            (axes[1], "storm", "fire rate"),
        ):
            bars = _series(axis, ns, series, scenario, metric, f"measured, {pending:,} pending")
            axis.plot(ns, [predicted(p, scenario, cores) for p in series], "x:",
                      color=bars[0].get_color(), label=f"model, {pending:,} pending")  # fmt: skip
    axes[0].set_ylabel("batch, end to end (jobs/s)")
    axes[1].set_ylabel("storm fire rate (fires/s)")
    for axis in axes:
        axis.set_xlabel("processes of each role (api, picker, worker)")
        axis.set_xticks(sorted({p["roles"] for p in points}))
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    fig.suptitle("Against role processes on the same 2 cores: measured, and the model's"
                 " cores left / CPU per job")  # fmt: skip
    fig.tight_layout()
    fig.savefig(out / "scale-roles.png", dpi=110)


def scale_out_rows(batch: Costs, storm: Costs) -> list[dict[str, Any]]:
    fire_path = Costs({**storm.ms, "api": 0.0})  # a fire involves no api call
    rows = []
    for k in PRIMARIES:
        d = balanced(batch, k, PRIMARY_CORES)
        jobs_s, bound = scaled_out(batch, d)
        fires_s, fire_bound = scaled_out(fire_path, d)
        rows.append({"primaries": k, "deployment": d, "jobs_s": jobs_s, "bound": bound,
                     "fires_s": fires_s, "fire_bound": fire_bound,
                     "storm_s": storm_seconds(STORM_FIRES, fires_s)})  # fmt: skip
    return rows


def plot_out(plt: Any, rows: Sequence[dict[str, Any]], out: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    ks = [r["primaries"] for r in rows]
    left.plot(ks, [r["jobs_s"] for r in rows], "o-", label="jobs/s (batch path)")
    left.plot(ks, [r["fires_s"] for r in rows], "s--", label="fires/s (storm)")
    left.set_ylabel("predicted rate (upper bound)")
    right.plot(ks, [r["storm_s"] for r in rows], "o-")
    right.set_ylabel(f"seconds until the last of {STORM_FIRES:,} due at once starts")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel(f"PostgreSQL primaries ({PRIMARY_CORES} cores each), shards spread")
        axis.grid(True, alpha=0.3)
    left.set_yscale("log")
    left.legend(fontsize=8)
    fig.suptitle("The model scaled out (role processes added until PostgreSQL bounds)")
    fig.tight_layout()
    fig.savefig(out / "scale-out.png", dpi=110)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def measured_table(points: Sequence[Point], cores: float) -> list[str]:
    head = ("pending", "n", "batch jobs/s (model)", "fire rate (model)", "fire lag p50 / p99 /"
            " max ms", "PostgreSQL ms per job / per fire", "other cores")  # fmt: skip
    lines = [_row(head), _row(("--:",) * len(head))]
    for p in sorted(points, key=lambda p: (p["pending"], p["roles"])):
        lags = [med(p, "storm", f"fire lag {q}") or 0.0 for q in ("p50", "p99", "max")]
        pg = [med(p, scenario, "CPU per job: postgres") or 0.0 for scenario in ("batch", "storm")]
        batch, fires = med(p, "batch", "end-to-end throughput"), med(p, "storm", "fire rate")
        cells = (
            f"{p['pending']:,}", str(p["roles"]),
            f"{batch or 0:,.0f} ({predicted(p, 'batch', cores) or 0:,.0f})",
            f"{fires or 0:,.0f} ({predicted(p, 'storm', cores) or 0:,.0f})",
            " / ".join(f"{v:,.0f}" for v in lags), " / ".join(f"{v:.3f}" for v in pg),
            f"{med(p, 'batch', 'other processes (avg cores)') or 0:.2f}",
        )  # fmt: skip
        lines.append(_row(cells))
    return lines


def scale_out_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    head = ("primaries", "api / pickers / workers", "jobs/s", "bound by", "fires/s", "bound by",
            f"{STORM_FIRES:,} due at once: last start")  # fmt: skip
    lines = [_row(head), _row(("--:",) * len(head))]
    for r in rows:
        d = r["deployment"]
        cells = (
            str(r["primaries"]), f"{d.api} / {d.pickers} / {d.workers}", f"{r['jobs_s']:,.0f}",
            r["bound"], f"{r['fires_s']:,.0f}", r["fire_bound"], f"{r['storm_s']:.1f} s",
        )  # fmt: skip
        lines.append(_row(cells))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.drivers.scale_plot", description=__doc__)
    p.add_argument("results", type=Path)
    p.add_argument("--out", type=Path, default=Path("docs/img"))
    p.add_argument("--cores", type=float, default=2.0, help="the measuring machine's cores")
    args = p.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("needs matplotlib: pip install -e .[bench]", file=sys.stderr)
        return 2
    points = json.loads(args.results.read_text())["points"]
    largest = max(p["pending"] for p in points)
    at_largest = [p for p in points if p["pending"] == largest]
    rows = scale_out_rows(median_costs(at_largest, "batch"), median_costs(at_largest, "storm"))
    args.out.mkdir(parents=True, exist_ok=True)
    plot_pending(plt, points, args.out)
    plot_roles(plt, points, args.cores, args.out)
    plot_out(plt, rows, args.out)
    print(f"costs at {largest:,} pending, ms per job: batch {median_costs(at_largest, 'batch').ms}")
    print(f"  per fire: storm {median_costs(at_largest, 'storm').ms}")
    print("\n".join([*measured_table(points, args.cores), "", *scale_out_table(rows)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
