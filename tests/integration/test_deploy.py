"""deploy/: the compose file, Prometheus config and Grafana dashboard point at real things.

No Docker engine runs on our machines, so the stack itself is not started here;
these checks catch what rots silently: a renamed command or setting, a metric
the dashboard queries that the server no longer exports.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from chronoq.cli.main import main as cli
from chronoq.runtime.config import Settings, env_name

if TYPE_CHECKING:
    from .conftest import ServerHandle

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = {env_name(f.name) for f in dataclasses.fields(Settings)}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def test_every_chronoq_service_runs_a_real_command_with_real_settings() -> None:
    services = _compose()["services"]
    chronoq = {name: s for name, s in services.items() if "build" in s}
    assert {"migrate", "api-1", "coordinator-1", "picker-1", "worker"} <= set(chronoq)
    for name, service in chronoq.items():
        command = service["command"][0]
        assert command in cli.commands, f"{name}: no such command {command!r}"
        unknown = {k for k in service["environment"] if k not in SETTINGS}
        assert not unknown, f"{name}: unknown settings {unknown}"
        assert service["environment"]["CHRONOQ_STORE"].startswith("postgresql://")


def test_prometheus_scrapes_the_ports_the_services_listen_on() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api_targets = jobs["chronoq-api"]["static_configs"][0]["targets"]
    assert all(t.endswith(":8080") for t in api_targets)
    metrics_port = _compose()["services"]["picker-1"]["environment"]["CHRONOQ_METRICS_PORT"]
    assert jobs["chronoq-roles"]["dns_sd_configs"][0]["port"] == int(metrics_port)


def test_every_metric_the_dashboard_queries_is_exported(server: ServerHandle) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "chronoq.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queried = {
        re.sub(r"_(total|bucket)$", "", name)
        for expr in exprs
        for name in re.findall(r"\b([a-z][a-z0-9_]*)\s*[\[{]", expr)
        if name not in {"rate", "sum", "by", "histogram_quantile"}
    }
    assert len(queried) >= 8, queried
    types = re.findall(r"^# TYPE (\S+) ", httpx.get(server.url + "/metrics").text, re.M)
    exported = {re.sub(r"_total$", "", name) for name in types}
    assert queried <= exported, f"queried but not exported: {queried - exported}"
