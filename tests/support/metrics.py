"""The Prometheus text exposition format: samples, selectors, and ``GET /metrics``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx

_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>(?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?'
    r"\s+(?P<value>\S+)"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition; ``ValueError`` on a line that is not one."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"unparseable metrics line: {line!r}")
        labels = dict(_LABEL.findall(m.group("labels") or ""))
        samples.append(Sample(m.group("name"), labels, float(m.group("value"))))
    return samples


@dataclass(frozen=True, slots=True)
class MetricSelector:
    """``name{label="value",...}``: selects the samples of ``name`` whose labels include these."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def parse(text: str) -> MetricSelector:
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?", text.strip())
        if match is None:
            raise ValueError(f"bad metric selector {text!r}")
        return MetricSelector(match.group(1), dict(_LABEL.findall(match.group(2) or "")))

    def total(self, samples: Sequence[Sample]) -> float | None:
        """Sum of the matching samples; None if none matches (the metric is absent)."""
        found = [
            s.value
            for s in samples
            if s.name == self.name and all(s.labels.get(k) == v for k, v in self.labels.items())
        ]
        return sum(found) if found else None

    def __str__(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.name}{{{labels}}}" if labels else self.name


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    return MetricSelector(name, labels).total(parse_metrics(text)) or 0.0


def histogram_totals(samples: Sequence[Sample], name: str) -> dict[str, Any]:
    """``_count``, ``_sum`` and cumulative buckets of histogram ``name`` (summed over labels)."""
    buckets: dict[str, float] = {}
    count = total = 0.0
    for s in samples:
        if s.name == f"{name}_bucket":
            le = s.labels.get("le", "")
            buckets[le] = buckets.get(le, 0.0) + s.value
        elif s.name == f"{name}_count":
            count += s.value
        elif s.name == f"{name}_sum":
            total += s.value
    return {"count": count, "sum": total, "buckets": buckets}


def histogram_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What a histogram recorded between two ``histogram_totals``; the mean in ms."""
    count = after["count"] - before["count"]
    total = after["sum"] - before["sum"]
    buckets = {le: v - before["buckets"].get(le, 0.0) for le, v in after["buckets"].items()}
    return {
        "count": count,
        "sum_s": total,
        "mean_ms": total / count * 1000 if count else None,
        "buckets": buckets,
    }


def scrape(url: str) -> str:
    """``GET {url}/metrics``; asserts 200 and returns the text."""
    r = httpx.get(url.rstrip("/") + "/metrics", timeout=10.0)
    assert r.status_code == 200, f"GET /metrics: {r.status_code} {r.text[:300]}"
    return r.text
