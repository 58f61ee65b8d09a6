"""A private Prometheus (Debian's ``prometheus``) scraping given targets, on a free port.

Used by the live dashboard test (tests/integration/test_prometheus_live.py) and for
trying the dashboard by hand against a local cluster. ``targets`` maps a role to its
``host:port`` addresses; each role is one scrape job whose targets carry a ``role``
label, the layout deploy/prometheus.yml uses and the Grafana dashboard queries.
The scrape interval is short (1 s by default) so a test sees data within seconds;
the TSDB lives in the server's folder.

``query`` runs an instant PromQL query through the HTTP API and returns its result
list (raising ``PrometheusError`` with Prometheus's own message when the query is
refused); ``targets_health`` reports each target's last scrape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from chronoq.runtime.servers.base import HOST, OnePortServer, tcp_open


class PrometheusError(RuntimeError):
    """Prometheus answered with ``status: error`` (a bad query, usually)."""


def scrape_config(targets: Mapping[str, Sequence[str]], *, interval: float = 1.0) -> dict[str, Any]:
    """A prometheus.yml as a dict: one job per role, each target labelled ``role``."""
    seconds = f"{interval:g}s"
    return {
        "global": {"scrape_interval": seconds, "evaluation_interval": seconds},
        "scrape_configs": [
            {
                "job_name": f"chronoq-{role}",
                "scrape_timeout": seconds,
                "static_configs": [{"targets": list(addresses), "labels": {"role": role}}],
            }
            for role, addresses in targets.items()
        ],
    }


class PrometheusServer(OnePortServer):
    name = "prometheus"
    executable = "prometheus"
    package = "apt-get install prometheus"

    def __init__(
        self,
        folder: Path,
        targets: Mapping[str, Sequence[str]],
        *,
        port: int | None = None,
        interval: float = 1.0,
    ) -> None:
        super().__init__(folder, port)
        self.targets = {role: list(addresses) for role, addresses in targets.items()}
        self.interval = interval

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.folder / "prometheus.yml"

    def argv(self, program: str) -> Sequence[str]:
        # JSON is YAML: no YAML library needed to write prometheus.yml.
        config = scrape_config(self.targets, interval=self.interval)
        self.config_path.write_text(json.dumps(config, indent=2))
        return [
            program,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
            "--log.level=warn",
        ]

    def ready(self) -> bool:
        if not tcp_open(self.port):
            return False
        try:
            return httpx.get(self.url + "/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    # -- the HTTP API ------------------------------------------------------------------------

    def _api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (``vector``: one entry per series)."""
        data = self._api("query", {"query": expr})
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def targets_health(self) -> dict[str, str]:
        """``role/instance`` -> ``up``, ``down`` or ``unknown`` (not scraped yet)."""
        active = self._api("targets", {"state": "active"})["activeTargets"]
        return {
            f"{t['labels'].get('role', '?')}/{t['labels']['instance']}": t["health"] for t in active
        }
