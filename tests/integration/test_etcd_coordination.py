"""``--coordination etcd://`` end to end: real role processes over a private PostgreSQL
store and a private etcd.

* every role in one process runs a job, and the coordination state is in etcd (the
  leader key, the members, the assignment), none of it in PostgreSQL's tables;
* a second worker under a live node id is refused (the twin check reads etcd);
* a bad URL is a one-line ConfigError naming ``coordination`` (before anything
  connects), an unreachable etcd a one-line UnavailableError naming it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronoq.runtime.pgserver import PrivatePostgres, find_bindir
from chronoq.runtime.servers.etcd import EtcdServer
from tests.support.etcd_server import running_etcd
from tests.support.postgres import create_database, private_postgres
from tests.support.processes import chronoq_argv, clean_env, free_port
from tests.support.waiting import wait_for

from .helpers import completed, make_client, new_user, wait_runs
from .test_distributed import FAST, Processes, _healthy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_bindir() is None and not os.environ.get("CI"), reason="PostgreSQL not installed"
    ),
]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres(lambda folder: PrivatePostgres(folder, fast=True)) as server:
        yield server


@pytest.fixture
def dsn(postgres: PrivatePostgres) -> str:
    return create_database(postgres.dsn, f"t_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with running_etcd(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.close()


def _keys(server: EtcdServer, prefix: str) -> dict[str, Any]:
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = {"key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(end.encode()).decode()}  # fmt: skip
    answer = httpx.post(server.client_url + "/v3/kv/range", json=body, timeout=2).json()
    return {base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"]))
            for kv in answer.get("kvs", ())}  # fmt: skip


def _psql(dsn: str, sql: str) -> str:
    return subprocess.run(["psql", dsn, "-Atc", sql], capture_output=True, text=True,
                          timeout=10).stdout.strip()  # fmt: skip


def test_all_roles_in_one_process_coordinate_through_etcd(
    dsn: str, processes: Processes, etcd: EtcdServer
) -> None:
    prefix = f"it{uuid.uuid4().hex[:8]}"
    port = free_port()
    processes.start("up", "up", "--store", dsn, "--port", str(port), "--node-id", "solo",
                    "--coordination", f"{etcd.url}/{prefix}", *FAST)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _healthy(url), 30), processes.logs()
    with make_client(url, new_user("etcd")) as api:
        r = api.post("/submit", json={"project_id": "e", "payload": "cmd:echo $CHRONOQ_ATTEMPT"})
        assert r.status_code == 201, r.text
        runs = wait_runs(api, r.json()["job_id"], lambda rs: bool(completed(rs)), 20, "a run")
        assert completed(runs)[0]["output"] == "1\n"

    keys = _keys(etcd, prefix + "/")
    assert keys[f"{prefix}/leader"]["holder"] == "solo"
    roles = {v["role"] for k, v in keys.items() if k.startswith(f"{prefix}/members/")}
    assert {"picker", "worker"} <= roles, keys.keys()

    # The job ran without a picker (fired in its insert), so the shards may be assigned
    # (and re-assigned, as members join) a moment later: wait for an assignment the
    # store is fenced with, rather than assume the first one read is the last.
    def fenced() -> dict[str, Any] | None:
        assignment: dict[str, Any] | None = _keys(etcd, prefix + "/").get(f"{prefix}/assignment")
        if assignment is None or not assignment["owners"]:
            return None  # not yet, or made before the picker joined
        # The store fences claims with etcd's assignment epoch.
        stored = _psql(dsn, "SELECT epoch FROM fence_epoch")
        return assignment if stored == str(assignment["epoch"]) else None

    assignment = wait_for(fenced, 10)
    assert assignment is not None, (_keys(etcd, prefix + "/"), processes.logs())
    owners = set(assignment["owners"].values())
    assert len(owners) == 1 and owners.pop().startswith("solo"), owners
    # Nothing of the coordination went to PostgreSQL's own tables.
    assert _psql(dsn, "SELECT count(*) FROM leader_lease") == "0"
    assert _psql(dsn, "SELECT count(*) FROM members") == "0"


def test_a_second_process_under_a_live_node_id_is_refused(
    dsn: str, processes: Processes, etcd: EtcdServer
) -> None:
    prefix = f"tw{uuid.uuid4().hex[:8]}"
    common = ["--store", dsn, "--coordination", f"{etcd.url}/{prefix}", *FAST]
    first = processes.start("worker-a", "worker", "--node-id", "twin", *common)
    assert wait_for(lambda: f"{prefix}/members/twin" in _keys(etcd, prefix + "/"), 20), (
        processes.logs()
    )
    second = processes.start("worker-b", "worker", "--node-id", "twin", *common)
    assert second.wait(30) == 1, processes.logs()
    log = (processes.root / "worker-b.log").read_text()
    assert "node id 'twin' is in use by a live worker" in log
    assert first.poll() is None, "the live owner of the id must be unaffected"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("etcd://nope", "chronoq: coordination: 'nope' in 'etcd://nope' is not host:port"),
        ("etcd://127.0.0.1:1?timeout=0.5", "chronoq: coordination: etcd unavailable"),
    ],
)
def test_bad_or_unreachable_etcd_is_a_one_line_error(dsn: str, url: str, expected: str) -> None:
    done = subprocess.run(
        chronoq_argv("coordinator", "--store", dsn, "--coordination", url),
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("chronoq:")]
    assert len(errors) == 1 and errors[0].startswith(expected), done.stderr
