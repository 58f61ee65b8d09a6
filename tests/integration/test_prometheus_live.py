"""The Grafana dashboard against a real Prometheus scraping a real cluster under load.

One process per role (api, coordinator, picker, worker) over a private PostgreSQL, each
serving ``/metrics`` (the api on its port, the others on ``--metrics-port``); Debian's
``prometheus`` scrapes them every second with the role-labelled layout of
deploy/prometheus.yml. Twice: jobs written by the api and runs dispatched through the
store's run table; then jobs buffered in the submission log and moved by a writer
process (``--ingest log``) and runs sent through a Redis run queue (``--dispatch
redis://``, a private redis-server). Load:
immediate jobs, an every-second recurring job, failing ``cmd:exit 1`` jobs (retried
once) and a large payload (blob upload and download). Then every query of
deploy/grafana/dashboards/chronoq.json must return data through Prometheus's HTTP API,
and the panels that show the cluster's state must show the right state: one leader,
every shard owned, each role alive, failures by status.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronoq.runtime.pgserver import PrivatePostgres, find_bindir
from chronoq.runtime.servers.prometheus import PrometheusError, PrometheusServer
from tests.support.postgres import create_database, private_postgres
from tests.support.processes import chronoq_argv, clean_env, free_port, log_tail, spawn
from tests.support.prometheus_server import PrometheusFactory, prometheus_factory  # noqa: F401
from tests.support.redis_server import RedisFactory, redis_factory  # noqa: F401
from tests.support.waiting import wait_for

from .helpers import RUN_SETTLED, make_client, new_user, submit, wait_runs
from .test_deploy import dashboard_queries

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_bindir() is None and not os.environ.get("CI"), reason="PostgreSQL not installed"
    ),
]

FAST = ["--lease-seconds", "3", "--leader-ttl", "1.5", "--member-ttl", "1.5"]
SHARDS = 256
SCRAPED_DEADLINE = 20.0
"""Prometheus's first scrape lands ~5.5 s after it starts."""
DATA_DEADLINE = 30.0
MAY_BE_ZERO = {
    "Run queue messages (broker)",
    "Runs held per worker",
    "Queue depth",
    "Dispatch backlog",
    "Oldest unclaimed fire age",
    "Runs reaped /s (coordinator)",
    "Refused by the store /s",
}
"""Panels that show trouble or a backlog: data, but 0 in a healthy cluster. Every other
panel must show activity (a value above 0) from the load."""
QUEUED_ONLY = {"Run queue messages (broker)", "Submissions moved /s (writer)"}
"""Panels with data only with a run queue (``--dispatch``) and a writer (``--ingest``)."""


class Cluster:
    """The role processes of the test, each in its own session; all killed at the end."""

    def __init__(self, root: Path, dsn: str, dispatch: str) -> None:
        self.root = root
        self.common = ["--store", dsn, "--blob-dir", str(root / "blobs"), *FAST]
        if dispatch:
            self.common += ["--dispatch", dispatch, "--ingest", "log"]
        self.queued = bool(dispatch)
        self.roles = ("api", "coordinator", "picker", "worker", "writer")[: 5 if dispatch else 4]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, role: str) -> None:
        port = free_port()
        flag = "--port" if role == "api" else "--metrics-port"
        argv = chronoq_argv(role, "--node-id", f"{role}-1", flag, str(port), *self.common)
        self.procs[role] = spawn(argv, self.root / f"{role}.log", env=clean_env(), cwd=self.root)
        self.ports[role] = port

    def healthy(self) -> bool:
        for port in self.ports.values():
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
        return True

    def logs(self) -> str:
        return "\n".join(log_tail(self.root / f"{role}.log", 30) for role in self.procs)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(params=["store", "queued"])
def cluster(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_factory: RedisFactory,  # noqa: F811 - the fixture imported above
) -> Iterator[Cluster]:
    dispatch = "" if request.param == "store" else redis_factory(durable=False).url
    with private_postgres(lambda folder: PrivatePostgres(folder, fast=True)) as postgres:
        dsn = create_database(postgres.dsn, f"t_{uuid.uuid4().hex[:10]}")
        nodes = Cluster(tmp_path, dsn, dispatch)
        try:
            for role in nodes.roles:
                nodes.start(role)
            yield nodes
        finally:
            nodes.close()


def _load(url: str) -> None:
    with make_client(url, new_user("prom")) as api:
        passing = [submit(api, payload=f"echo-{i}") for i in range(5)]
        passing.append(submit(api, payload="big " + "x" * 64 * 1024))  # offloaded to the blobs
        failing = [submit(api, payload="cmd:exit 1", max_retries=1) for _ in range(3)]
        submit(api, payload="tick", cron_schedule="@every 1s")
        for job_id in passing:
            wait_runs(api, job_id, lambda rs: any(r["status"] in RUN_SETTLED for r in rs), 20)
        for job_id in failing:  # FAILED after one RETRY_SCHEDULED attempt
            wait_runs(api, job_id, lambda rs: any(r["status"] == "FAILED" for r in rs), 20)
        api.get("/jobs")


def _shows(title: str, result: list[dict[str, Any]]) -> bool:
    """Data (a finite value), and activity unless the panel may show 0."""
    values = [float(series["value"][1]) for series in result]
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and (title in MAY_BE_ZERO or max(finite) > 0)


def _values(prometheus: PrometheusServer, expr: str, label: str) -> dict[str, float]:
    return {s["metric"].get(label, ""): float(s["value"][1]) for s in prometheus.query(expr)}


def test_every_dashboard_query_returns_data_from_a_live_cluster(
    cluster: Cluster,
    prometheus_factory: PrometheusFactory,  # noqa: F811 - the fixture imported above
) -> None:
    assert wait_for(cluster.healthy, 30), cluster.logs()
    prometheus = prometheus_factory(
        {role: [f"127.0.0.1:{port}"] for role, port in cluster.ports.items()}
    )
    # Load only once every target has been scraped: rates are differences between scrapes.
    scraped = wait_for(
        lambda: set(prometheus.targets_health().values()) == {"up"}, SCRAPED_DEADLINE
    )
    assert scraped, f"{prometheus.targets_health()}\n{log_tail(prometheus.log_path)}"
    _load(f"http://127.0.0.1:{cluster.ports['api']}")

    queries = [(t, e) for t, e in dashboard_queries() if cluster.queued or t not in QUEUED_ONLY]
    missing: dict[str, str] = {}

    def all_have_data() -> bool:
        missing.clear()
        for title, expr in queries:
            try:
                result = prometheus.query(expr)
            except PrometheusError as exc:
                pytest.fail(f"{title}: Prometheus refused {expr}: {exc}")
            if not _shows(title, result):
                missing[expr] = f"{title}: {result}"
        return not missing

    ok = wait_for(all_have_data, DATA_DEADLINE, interval=0.5)
    assert ok, (
        f"queries without data or activity: {list(missing.values())}\n"
        f"targets: {prometheus.targets_health()}\n{cluster.logs()}\n"
        f"{log_tail(prometheus.log_path)}"
    )

    # The panels show the cluster as it is, not just something.
    up = _values(prometheus, 'sum by (role) (up{role!=""})', "role")
    assert up == dict.fromkeys(cluster.roles, 1), up
    leaders = _values(prometheus, 'coordinator_leader{role="coordinator"}', "instance")
    assert list(leaders.values()) == [1.0], leaders
    shards = _values(prometheus, 'picker_shards_owned{role="picker"}', "instance")
    assert list(shards.values()) == [SHARDS], shards
    members = _values(prometheus, "cluster_members_alive", "member_role")
    alive = {role: members.get(role) for role in cluster.roles}
    assert alive == dict.fromkeys(cluster.roles, 1), members
    statuses = _values(prometheus, "sum by (status) (runs_finished_total)", "status")
    assert {"COMPLETED", "FAILED", "RETRY_SCHEDULED"} <= {s for s, v in statuses.items() if v}
    blob = _values(prometheus, 'sum by (role, operation) (s3_operations_total{role=~"api|worker"})'
                   ' > 0', "operation")  # fmt: skip
    assert {"upload", "download"} <= set(blob), blob
    # Fires: the immediate jobs' in their insert (api), the recurring job's by a picker.
    for counter, roles in (("jobs_created_total", "api"), ("jobs_enqueued_total", "api|picker")):
        total = _values(prometheus, f'sum({counter}{{role=~"{roles}"}})', "")
        assert total[""] >= 10, (counter, total)
    fired = _values(prometheus, 'sum(jobs_enqueued_total{role="picker"})', "")
    assert fired[""] >= 1, fired
