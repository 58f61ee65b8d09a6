"""Fresh against warm (``--fresh-pass``): a scenario on a just-migrated database, then the
same scenario again on the same database and server, and the ratios of the two.

Issue 11 asks that a fresh database (just migrated: no rows, no planner statistics)
perform within 20% of the steady state for batch, HTTP and light-load latency, and that
light-load submit → start p99 on PostgreSQL stay ≤ 5 ms from the start. With
``--fresh-pass`` every scenario run gets a target with no warm-up; the scenario runs
twice on it: the first pass is recorded as ``<scenario>[fresh]``, the second (the same
load on the database the first pass filled) as ``<scenario>``, the steady state.
``fresh_ratios`` pairs the i-th fresh run with the i-th warm one (measured minutes
apart on the same machine, so the ratio holds even when the machine is shared).
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.model import Goal, ScenarioRun
from bench.stats import median

FRESH = "fresh"

RATIOS: dict[str, tuple[tuple[str, str, Goal | None], ...]] = {
    "batch": (("end-to-end throughput", "end-to-end jobs/s: fresh / warm", Goal(">=", 0.8)),),
    "http": (("end-to-end throughput", "end-to-end jobs/s: fresh / warm", Goal(">=", 0.8)),),
    "floor": (("end-to-end throughput", "end-to-end jobs/s: fresh / warm", None),),
    "floor-lease": (("end-to-end throughput", "end-to-end jobs/s: fresh / warm", None),),
    "latency": (
        ("start - created_at p50", "start - created_at p50: fresh / warm", None),
        ("start - created_at p99", "start - created_at p99: fresh / warm", Goal("<=", 1.2)),
        ("start - client send p99", "start - client send p99: fresh / warm", None),
    ),
}
"""Per scenario: (metric, ratio label, goal). Throughput: fresh / warm ≥ 0.8 (within 20%
of the steady state); latency: fresh / warm ≤ 1.2."""

COMMON: tuple[tuple[str, str, Goal | None], ...] = (
    ("CPU per job: postgres", "PostgreSQL CPU per job: fresh / warm", None),
    ("CPU per job: all + PostgreSQL", "all CPU per job: fresh / warm", None),
    ("PostgreSQL statements per job", "statements per job: fresh / warm", None),
    ("PostgreSQL WAL bytes per job", "WAL bytes per job: fresh / warm", None),
    ("PostgreSQL buffers dirtied per job", "buffers dirtied per job: fresh / warm", None),
    ("PostgreSQL buffers written per job", "buffers written per job: fresh / warm", None),
)
"""For every throughput scenario, where the target reports them."""


def pass_key(scenario: str, variant: str, fresh: bool) -> str:
    """The results key of a run: ``batch``, ``batch[fresh]``, ``batch[stack]``,
    ``batch[stack,fresh]``."""
    tags = [t for t in (variant, FRESH if fresh else "") if t]
    return f"{scenario}[{','.join(tags)}]" if tags else scenario


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is 0."""
    return a / b if a is not None and b else None


ALIASES = {"CPU per job: all + PostgreSQL": "CPU per job: all roles + PostgreSQL"}
"""The distributed profile's name for the same figure."""


def value(run: ScenarioRun, name: str) -> float | None:
    for candidate in (name, ALIASES.get(name)):
        for metric in run.metrics:
            if metric.name == candidate:
                return metric.value
    return None


def pair_ratios(scenario: str, fresh: ScenarioRun, warm: ScenarioRun) -> ScenarioRun:
    """One run of ``fresh / warm`` ratios for one pair (only metrics both runs have)."""
    out = ScenarioRun(f"{scenario} {FRESH} / warm")
    for metric, label, goal in (*RATIOS.get(scenario, ()), *COMMON):
        a, b = value(fresh, metric), value(warm, metric)
        if a is None and b is None:
            continue
        out.add(label, ratio(a, b), "x", goal)
    return out


def fresh_ratios(collected: dict[str, list[ScenarioRun]]) -> dict[str, list[ScenarioRun]]:
    """For every ``<key>[fresh]`` (or ``[variant,fresh]``) with its warm ``<key>``: one run of
    ratios per pair, keyed ``<key> fresh / warm``."""
    out: dict[str, list[ScenarioRun]] = {}
    for key, fresh_runs in collected.items():
        warm_key = _warm_key(key)
        if warm_key is None:
            continue
        scenario = warm_key.split("[", 1)[0]
        for fresh, warm in zip(fresh_runs, collected.get(warm_key, []), strict=False):
            if fresh.error or warm.error:
                continue
            run = pair_ratios(scenario, fresh, warm)
            run.scenario = f"{warm_key} {FRESH} / warm"
            out.setdefault(run.scenario, []).append(run)
    return out


def _warm_key(key: str) -> str | None:
    """``batch[fresh]`` -> ``batch``, ``batch[stack,fresh]`` -> ``batch[stack]``; else None."""
    if not key.endswith("]") or "[" not in key:
        return None
    base, tags = key[:-1].split("[", 1)
    parts = tags.split(",")
    if parts[-1] != FRESH:
        return None
    rest = parts[:-1]
    return f"{base}[{','.join(rest)}]" if rest else base


def median_ratio(runs: Sequence[ScenarioRun], label: str) -> float | None:
    """The median of one ratio over pairs (for reports and tests)."""
    present = [v for r in runs if (v := value(r, label)) is not None]
    return median(present)
