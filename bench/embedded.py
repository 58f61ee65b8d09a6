"""The embedded profile: one ``chronoq up`` per scenario run (or ``--url``), over HTTP.

Completion is read from ``/metrics`` (the completed-runs counter, cheap) and then
from the store through the API (no PENDING or RUNNING job of the scenario's user
left); run times through ``GET /v1/jobs/{id}/runs``; CPU and I/O of the server's
process tree from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bench.cpu import CpuSample
from bench.httpclient import Client, Connection, build_request
from bench.model import ScenarioRun, Settings
from bench.server import Endpoint, chronoq_server, parse_url
from bench.target import Completion, CounterPair, RunTimes, Scenario, nothing
from chronoq.domain.clock import parse_rfc3339
from tests.support.metrics import MetricSelector, histogram_totals, parse_metrics


def epoch(text: str | None) -> float | None:
    """RFC 3339 to epoch seconds; None stays None."""
    return None if text is None else parse_rfc3339(text).timestamp()


# --- /metrics ---------------------------------------------------------------------------


async def metrics_text(client: Client) -> str:
    response = await client.call("GET", "/metrics")
    if response.status != 200:
        raise RuntimeError(f"/metrics answered {response.status}")
    return response.body.decode()


def completed_total(text: str, selector: MetricSelector) -> float:
    """The completed-runs counter; 0 for a labelled counter declared but not yet used."""
    value = selector.total(parse_metrics(text))
    if value is not None:
        return value
    family = selector.name.removesuffix("_total")
    if f"# TYPE {family} " in text or f"# TYPE {selector.name} " in text:
        return 0.0
    raise RuntimeError(f"metric {selector} not found in /metrics; pass --completed-metric")


# --- the store, through the API -----------------------------------------------------------


async def has_unfinished(client: Client) -> bool:
    """Whether the user still has a PENDING or RUNNING job (two ``limit=1`` list calls)."""
    for status in ("RUNNING", "PENDING"):
        response = await client.call("GET", f"/v1/jobs?status={status}&limit=1")
        if response.status != 200:
            raise RuntimeError(f"GET /v1/jobs?status={status}: {response.status}")
        if response.json()["items"]:
            return True
    return False


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


# --- the target ---------------------------------------------------------------------------


@dataclass(slots=True)
class ServerTarget:
    """One ``chronoq up``. Two connections for the untimed calls: one for the scenario's
    own polls, one for the timeline sampler that runs beside them."""

    endpoint: Endpoint
    settings: Settings
    kind: str = "embedded"
    server_name: str = "server"
    throughput_goals: bool = True
    on_postgres: bool = False
    timeline_min_interval_s: float = 0.0
    workers: int = 1
    _polls: Client = field(init=False)
    _sampler: Client = field(init=False)

    def __post_init__(self) -> None:
        self._polls = Client(self.endpoint.host, self.endpoint.port)
        self._sampler = Client(self.endpoint.host, self.endpoint.port)

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def api_ports(self) -> list[int]:
        return [self.endpoint.port]

    async def close(self) -> None:
        await self._polls.close()
        await self._sampler.close()

    def cpu(self) -> CpuSample:
        return CpuSample.of_tree("server", self.endpoint.pid, io=True)

    async def completed(self) -> float:
        return completed_total(await metrics_text(self._polls), self.settings.completed_metric)

    async def wait_completed(
        self, total: float, user: str, *, deadline: float, interval_s: float
    ) -> Completion:
        polls = 1
        while (await self.completed()) < total:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"fewer than {total:.0f} runs completed by the deadline")
            await asyncio.sleep(interval_s)
            polls += 1
        executed_at = time.perf_counter()
        client = Client(self.endpoint.host, self.endpoint.port, user_id=user)
        try:
            while await has_unfinished(client):
                if time.perf_counter() > deadline:
                    raise TimeoutError("jobs still PENDING/RUNNING in the store at the deadline")
                await asyncio.sleep(interval_s)
        finally:
            await client.close()
        return Completion(time.perf_counter(), polls, executed_at)

    async def counters(self) -> dict[str, int]:
        return {}

    def measuring(
        self, run: ScenarioRun, jobs: int
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return nothing()

    async def timeline_point(self, baseline: float) -> dict[str, Any]:
        text = await metrics_text(self._sampler)
        return {"completed": completed_total(text, self.settings.completed_metric) - baseline}

    async def first_runs(self, user: str, job_ids: Sequence[str]) -> dict[str, RunTimes]:
        runs = await fetch_runs(self.endpoint.host, self.endpoint.port, user, job_ids)
        out = {}
        for job_id, items in runs.items():
            if items:  # newest first: the first attempt is the last item
                first = items[-1]
                out[job_id] = RunTimes(
                    scheduled_for=epoch(first.get("scheduled_for")),
                    triggered_at=epoch(first.get("triggered_at")),
                    started_at=epoch(first.get("started_at")),
                    completed_at=epoch(first.get("completed_at")),
                    worker=first.get("worker_id"),
                )
        return out

    async def completed_jobs(self, user: str) -> int:
        client = Client(self.endpoint.host, self.endpoint.port, user_id=user)
        try:
            return await count_jobs(client, "COMPLETED")
        finally:
            await client.close()

    async def fire_lag_histogram(self) -> dict[str, Any] | None:
        samples = parse_metrics(await metrics_text(self._polls))
        return histogram_totals(samples, self.settings.fire_lag_metric)

    def resource_metrics(
        self,
        run: ScenarioRun,
        jobs: int,
        cpu: dict[str, Any],
        counters: CounterPair,
    ) -> None:
        server_s = cpu["cpu_s"].get("server")
        sys_s = cpu["kernel_cpu_s"].get("server")
        client_s = cpu["client_cpu_s"]
        io = cpu["io"]
        run.add(
            "server CPU per job", server_s / jobs * 1000 if server_s is not None else None, "ms"
        )
        run.add("server bytes written per job", io["wchar"] / jobs if io else None, "B")
        run.add("server CPU in kernel", sys_s / server_s * 100 if sys_s and server_s else None, "%")
        run.add("server CPU (avg cores)", cpu["cores"].get("server"), "cores")
        run.add("load-gen CPU per job", client_s / jobs * 1000, "ms")
        run.add("load-gen CPU (avg cores)", cpu["client_cores"], "cores")
        run.add("machine busy (avg cores)", cpu["machine_busy_cores"], "cores")
        run.add("other processes (avg cores)", cpu["other_cores"], "cores")

    def annotate(self, run: ScenarioRun) -> None:
        pass


# --- the profile --------------------------------------------------------------------------


@dataclass(slots=True)
class EmbeddedProfile:
    """A fresh ``chronoq up`` for every scenario run, or the server at ``url``."""

    settings: Settings
    python: str
    server_args: list[str]
    url: str | None = None
    server_pid: int | None = None
    name: str = "embedded"

    def session(self) -> contextlib.AbstractAsyncContextManager[None]:
        return nothing()

    def variants(self) -> tuple[str, ...]:
        return ("",)

    def use(self, variant: str) -> None:
        assert variant == "", variant

    @contextlib.asynccontextmanager
    async def target(self, scenario: Scenario) -> AsyncIterator[ServerTarget]:
        async with self._endpoint() as endpoint:
            target = ServerTarget(endpoint, self.settings)
            try:
                yield target
            finally:
                await target.close()

    @contextlib.asynccontextmanager
    async def _endpoint(self) -> AsyncIterator[Endpoint]:
        if self.url:
            host, port = parse_url(self.url)
            yield Endpoint(host, port, self.server_pid)
            return
        async with chronoq_server(
            self.python, self.server_args, keep_data=self.settings.keep_data
        ) as endpoint:
            yield endpoint

    def describe(self) -> dict[str, Any]:
        return {"url": self.url}

    def notes(self) -> str | None:
        return None
