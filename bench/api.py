"""Chronoq-specific helpers: job specs, /metrics parsing, completion polling, runs."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from bench.httpclient import Client, Connection, build_request

NOOP_PAYLOAD = "noop"
PROJECT_ID = "bench"

_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def noop_spec(**extra: Any) -> dict[str, Any]:
    return {"project_id": PROJECT_ID, "payload": NOOP_PAYLOAD, **extra}


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def parse_time(text: str | None) -> float | None:
    """RFC 3339 (``Z`` or offset) to epoch seconds; None stays None."""
    if text is None:
        return None
    return datetime.fromisoformat(text).timestamp()


# --- /metrics -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """Prometheus text exposition format, samples only."""
    samples: list[Sample] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE_RE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL_RE.findall(match.group(2) or ""))
        try:
            samples.append(Sample(match.group(1), labels, float(match.group(3))))
        except ValueError:
            continue
    return samples


@dataclass(frozen=True, slots=True)
class MetricSelector:
    """``name{label="value",...}``: sums the samples of ``name`` whose labels include these."""

    name: str
    labels: dict[str, str]

    @staticmethod
    def parse(text: str) -> MetricSelector:
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?", text.strip())
        if match is None:
            raise ValueError(f"bad metric selector {text!r}")
        return MetricSelector(match.group(1), dict(_LABEL_RE.findall(match.group(2) or "")))

    def total(self, samples: Sequence[Sample]) -> float | None:
        """Sum of matching samples; None if none matches (metric absent)."""
        found = [
            s.value
            for s in samples
            if s.name == self.name and all(s.labels.get(k) == v for k, v in self.labels.items())
        ]
        return sum(found) if found else None

    def __str__(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.name}{{{labels}}}" if labels else self.name


def histogram_totals(samples: Sequence[Sample], name: str) -> dict[str, Any]:
    """``_count``, ``_sum`` and cumulative buckets of a histogram (summed over labels)."""
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
    count = after["count"] - before["count"]
    total = after["sum"] - before["sum"]
    buckets = {le: v - before["buckets"].get(le, 0.0) for le, v in after["buckets"].items()}
    return {
        "count": count,
        "sum_s": total,
        "mean_ms": total / count * 1000 if count else None,
        "buckets": buckets,
    }


# --- completion -----------------------------------------------------------------------


class CompletionWatcher:
    """Tells how many runs completed, from /metrics (cheap) or, failing that, the jobs list."""

    def __init__(self, client: Client, selector: MetricSelector) -> None:
        self.client = client
        self.selector = selector
        self.polls = 0

    async def metrics_text(self) -> str:
        response = await self.client.call("GET", "/metrics")
        if response.status != 200:
            raise RuntimeError(f"/metrics answered {response.status}")
        return response.body.decode()

    async def metrics(self) -> list[Sample]:
        return parse_metrics(await self.metrics_text())

    async def completed(self) -> float:
        self.polls += 1
        text = await self.metrics_text()
        value = self.selector.total(parse_metrics(text))
        if value is not None:
            return value
        # A labelled counter has no sample before its first increment: 0 if it is declared.
        family = self.selector.name.removesuffix("_total")
        if f"# TYPE {family} " in text or f"# TYPE {self.selector.name} " in text:
            return 0.0
        raise RuntimeError(f"metric {self.selector} not found in /metrics; pass --completed-metric")

    async def wait_for(
        self, target: float, *, deadline: float, interval_s: float
    ) -> tuple[float, float]:
        """Poll until ``completed() >= target``; (perf_counter when seen, last value)."""
        value = await self.completed()
        while value < target:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {value:.0f}/{target:.0f} runs completed by the deadline")
            await asyncio.sleep(interval_s)
            value = await self.completed()
        return time.perf_counter(), value


async def has_unfinished(client: Client) -> bool:
    """Whether the user still has a PENDING or RUNNING job (two ``limit=1`` list calls)."""
    for status in ("RUNNING", "PENDING"):
        response = await client.call("GET", f"/v1/jobs?status={status}&limit=1")
        if response.status != 200:
            raise RuntimeError(f"GET /v1/jobs?status={status}: {response.status}")
        if response.json()["items"]:
            return True
    return False


async def wait_persisted(client: Client, *, deadline: float, interval_s: float) -> float:
    """Poll until no job of the user is PENDING/RUNNING in the store; perf_counter then."""
    while await has_unfinished(client):
        if time.perf_counter() > deadline:
            raise TimeoutError("jobs still PENDING/RUNNING in the store at the deadline")
        await asyncio.sleep(interval_s)
    return time.perf_counter()


async def count_jobs(client: Client, status: str | None, *, page: int = 1000) -> int:
    """Count the user's jobs (optionally by status) by paging ``GET /v1/jobs``."""
    count = 0
    cursor: str | None = None
    while True:
        path = f"/v1/jobs?limit={page}"
        if status:
            path += f"&status={status}"
        if cursor:
            path += f"&cursor={quote(cursor)}"
        response = await client.call("GET", path)
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {response.body[:200]!r}")
        data = response.json()
        count += len(data["items"])
        cursor = data.get("next_cursor")
        if not cursor:
            return count


async def fetch_runs(
    host: str, port: int, user_id: str, job_ids: Sequence[str], *, concurrency: int = 16
) -> dict[str, list[dict[str, Any]]]:
    """``GET /v1/jobs/{id}/runs`` for every job, over ``concurrency`` connections."""
    result: dict[str, list[dict[str, Any]]] = {}
    queue = list(reversed(job_ids))
    header = f"{host}:{port}"

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            while queue:
                job_id = queue.pop()
                data = build_request(
                    "GET", f"/v1/jobs/{job_id}/runs", host=header, headers={"X-User-ID": user_id}
                )
                response = await conn.request(data)
                if response.status != 200:
                    raise RuntimeError(
                        f"runs of {job_id}: {response.status} {response.body[:200]!r}"
                    )
                result[job_id] = response.json()["items"]
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(job_ids)) or 1)))
    return result
