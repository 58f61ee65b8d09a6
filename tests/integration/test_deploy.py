"""deploy/: the compose file, Prometheus config and Grafana dashboard point at real things.

No Docker engine runs on our machines, so the stack itself is not started here
(tests/integration/test_prometheus_live.py runs the dashboard's queries against a real
Prometheus scraping a local cluster); these checks catch what rots silently: a
renamed command or setting, a role nobody scrapes, a dashboard Grafana would not
load, a query Prometheus would refuse, a metric the dashboard queries that no
process exports.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from prometheus_client import generate_latest

from chronoq.cli.main import main as cli
from chronoq.observability.metrics import ClusterSample, Metrics
from chronoq.runtime.config import Settings, env_name
from chronoq.runtime.node import ROLES
from chronoq.runtime.wiring import postgres_backends

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "chronoq.json"
SETTINGS = {env_name(f.name) for f in dataclasses.fields(Settings)}
RATE_INTERVAL = "1m"
"""What the test puts for Grafana's ``$__rate_interval`` (Prometheus does not know it)."""
PROMQL_WORDS = {"rate", "sum", "max", "by", "histogram_quantile", "up"}
"""Functions, keywords and Prometheus's own series: not metrics Chronoq must export."""


def _compose(*overrides: str) -> dict[str, Any]:
    """docker-compose.yml, with ``overrides`` merged as Compose merges them: a service's
    mappings (``environment``, ``depends_on``) key by key, anything else replaced."""
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for name in overrides:
        extra = yaml.safe_load((DEPLOY / name).read_text())
        for service, fields in extra["services"].items():
            merged = data["services"].setdefault(service, {})
            for key, value in fields.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
    return data


SEED = "docker-compose.seed.yml"


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target, ``$__rate_interval`` replaced."""
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", RATE_INTERVAL))
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.mark.parametrize("overrides", [(), (SEED,)])
def test_every_chronoq_service_runs_a_real_command_with_real_settings(
    overrides: tuple[str, ...],
) -> None:
    services = _compose(*overrides)["services"]
    chronoq = {name: s for name, s in services.items() if "build" in s}
    assert {"migrate", "api-1", "coordinator-1", "picker-1", "worker"} <= set(chronoq)
    for name, service in chronoq.items():
        command = service["command"][0]
        assert command in cli.commands, f"{name}: no such command {command!r}"
        # AWS_*: the standard credential variables the S3 and SQS clients read
        unknown = {k for k in service["environment"] if k not in SETTINGS and k[:4] != "AWS_"}
        assert not unknown, f"{name}: unknown settings {unknown}"
        assert service["environment"]["CHRONOQ_STORE"].startswith("postgresql://")


def test_prometheus_scrapes_every_role_on_the_port_it_listens_on() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    services = _compose()["services"]
    metrics_port = int(services["picker-1"]["environment"]["CHRONOQ_METRICS_PORT"])
    scraped: dict[str, str] = {}  # compose service -> role label
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            role = static["labels"]["role"]
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                assert int(port) == (8080 if role == "api" else metrics_port), target
                scraped[host] = role
        for sd in job.get("dns_sd_configs", []):
            (relabel,) = job["relabel_configs"]
            assert relabel["target_label"] == "role"
            assert sd["port"] == metrics_port
            scraped.update(dict.fromkeys(sd["names"], relabel["replacement"]))
    services = _compose(SEED)["services"]  # the base stack plus the seed's writers
    running = {n: s["command"][0] for n, s in services.items() if "build" in s and n != "migrate"}
    assert set(scraped) == set(running), f"scraped {set(scraped)}, running {set(running)}"
    for name, command in running.items():
        assert scraped[name] == command, f"{name} runs {command} but is labelled {scraped[name]}"


def test_the_seed_stack_gives_every_role_the_seed_s_backends() -> None:
    """docker-compose.seed.yml: every role process gets the S3, SQS, Redis and etcd URLs,
    each naming a service of the merged file, and the wiring accepts them as they are."""
    services = _compose(SEED)["services"]
    roles = {n: s for n, s in services.items() if "build" in s and n != "migrate"}
    assert "writer" in roles and roles["writer"]["command"] == ["writer"]
    for name, service in roles.items():
        env = service["environment"]
        for variable, scheme in [("CHRONOQ_BLOB", "s3://"), ("CHRONOQ_DISPATCH", "sqs://"),
                                 ("CHRONOQ_INGEST", "redis://"),
                                 ("CHRONOQ_COORDINATION", "etcd://")]:  # fmt: skip
            assert env[variable].startswith(scheme), (name, variable)
        for value in env.values():
            if "://" not in value:
                continue
            named = [] if value.startswith(("s3://", "sqs://")) else [value]  # bucket, queue
            endpoints = [*named, *parse_qs(urlsplit(value).query).get("endpoint", [])]
            for host in (urlsplit(url).hostname for url in endpoints):
                assert host in services, f"{name}: {host} is not a service"
        settings = Settings.load(env)
        backends = postgres_backends(settings)  # builds every adapter; connects to nothing
        assert backends.coordination.__class__.__name__.startswith("Etcd")
        assert backends.submissions is not None


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = _promtool()
    done = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_is_a_grafana_dashboard() -> None:
    d = dashboard()
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["uid"] and d["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in d["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        covered = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                   for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_has_a_panel_for_each_required_view() -> None:
    exprs = "\n".join(expr for _, expr in dashboard_queries())
    for needed in (
        'jobs_created_total{role="api"}',  # submissions
        'jobs_enqueued_total{role=~"api|picker"}',  # fires (at insert, by pickers)
        "sum by (status) (rate(runs_finished_total",  # runs by status
        "histogram_quantile(0.99, sum by (le) (rate(job_fire_lag_seconds_bucket",
        'state=~"queued|running"',  # queue depth
        'dispatch_backlog{role="coordinator", state="due"}',  # dispatch backlog
        "job_execution_duration_seconds_bucket",
        'rate(http_requests_total{role="api"}',
        "http_request_duration_seconds_bucket",
        "coordinator_leader{",
        "picker_shards_owned{",
        "cluster_members_alive{",
        "rate(s3_operations_total",
    ):
        assert needed in exprs, f"no panel queries {needed}"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expr as a recording rule: a typo fails here, not in Grafana."""
    queries = dashboard_queries()
    assert len(queries) >= 20
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"chronoq:dashboard_query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(queries)
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([_promtool(), "check", "rules", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout, done.stdout


def test_every_metric_the_dashboard_queries_is_exported_and_lint_clean() -> None:
    metrics = Metrics()  # what every process exports; the leader adds the cluster sample
    metrics.cluster.sample = ClusterSample(1, 2, 3, 0.5, {"worker": 1}, queue_messages=4)
    text = generate_latest(metrics.registry).decode()
    exported = set()  # families by their TYPE lines (labelled ones may have no series yet)
    for name, kind in re.findall(r"^# TYPE (\w+) (\w+)$", text, re.M):
        suffixes = ("_bucket", "_count", "_sum") if kind == "histogram" else ("",)
        exported |= {name + suffix for suffix in suffixes}
    queried = {
        name
        for _, expr in dashboard_queries()
        for name in re.findall(r"\b([a-z_][a-z0-9_]*)\s*[\[{(]", expr)
        if name not in PROMQL_WORDS
    }
    assert len(queried) >= 15, queried
    assert queried <= exported, f"queried but not exported: {queried - exported}"
    roles = {r for _, expr in dashboard_queries() for r in re.findall(r'role="(\w+)"', expr)}
    assert roles <= set(ROLES), roles
    done = subprocess.run([_promtool(), "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found
