"""Distributed mode end to end: roles as separate processes over a private PostgreSQL.

Covers ``chronoq migrate``, ``chronoq up --store``, one process per role with
shards split between two pickers, ``chronoq cluster up|status``, and the seed's
worker-kill scenario (a run lost with its worker returns by membership, long
before its lease would expire).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chronoq.domain.states import LOST_TO_MEMBERSHIP
from chronoq.runtime.pgserver import PrivatePostgres, find_bindir
from tests.support.postgres import create_database, private_postgres
from tests.support.processes import (
    chronoq_argv,
    clean_env,
    free_port,
    pid_alive,
    signal_group,
    spawn,
)
from tests.support.waiting import wait_for

from .helpers import by_attempt, completed, make_client, new_user, wait_runs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_bindir() is None and not os.environ.get("CI"), reason="PostgreSQL not installed"
    ),
]

FAST = ["--lease-seconds", "3", "--leader-ttl", "1.5", "--member-ttl", "1.5"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres(lambda folder: PrivatePostgres(folder, fast=True)) as server:
        yield server


@pytest.fixture
def dsn(postgres: PrivatePostgres) -> str:
    return create_database(postgres.dsn, f"t_{uuid.uuid4().hex[:10]}")


class Processes:
    """Role processes started by one test, each in its own session; all killed at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}.log"
        proc = spawn(chronoq_argv(*args), log, env=clean_env(), cwd=self.root)
        self.procs[name] = proc
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("*.log"))
        )

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _run_a_job(url: str) -> None:
    with make_client(url, new_user("dist")) as api:
        r = api.post("/submit", json={"project_id": "d", "payload": "cmd:echo $CHRONOQ_ATTEMPT"})
        assert r.status_code == 201, r.text
        runs = wait_runs(api, r.json()["job_id"], lambda rs: bool(completed(rs)), 20, "a run")
        assert completed(runs)[0]["output"] == "1\n"


def test_migrate_then_all_roles_in_one_process(dsn: str, processes: Processes) -> None:
    migrate = subprocess.run(
        chronoq_argv("migrate", "--store", dsn),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    assert "schema up to date" in migrate.stdout
    port = free_port()
    processes.start("up", "up", "--store", dsn, "--port", str(port), *FAST)
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _healthy(url), 30), processes.logs()
    _run_a_job(url)


def test_one_process_per_role_splits_shards_and_survives_a_picker_death(
    dsn: str, processes: Processes
) -> None:
    port = free_port()
    common = ["--store", dsn, *FAST]
    processes.start("api", "api", "--port", str(port), "--node-id", "api-1", *common)
    processes.start("coord", "coordinator", "--node-id", "coord-1", *common)
    for name in ("picker-1", "picker-2"):
        processes.start(name, "picker", "--node-id", name, *common)
    processes.start("worker", "worker", "--node-id", "worker-1", *common)
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _healthy(url), 30), processes.logs()

    def shards() -> dict[str, int]:
        out = subprocess.run(
            chronoq_argv("cluster", "status", "--store", dsn),
            capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip
        found = {}
        for line in out.splitlines():
            cells = [c.strip() for c in line.split("│") if c.strip()]
            if len(cells) == 6 and cells[1] == "picker":
                found[cells[0]] = int(cells[5])
        return found

    assert wait_for(lambda: shards() == {"picker-1": 128, "picker-2": 128}, 20), shards()
    _run_a_job(url)

    signal_group(processes.procs["picker-1"].pid, signal.SIGKILL)
    assert wait_for(lambda: shards().get("picker-2") == 256, 20), shards()
    _run_a_job(url)  # every shard is served again


def test_cluster_up_supervises_and_stops_everything(tmp_path: Path, processes: Processes) -> None:
    port = free_port()
    folder = tmp_path / "cluster"
    cluster = processes.start(
        "cluster", "cluster", "up", "--folder", str(folder), "--api", "1", "--pickers", "2",
        "--workers", "2", "--coordinators", "2", "--port", str(port), "--arg=--member-ttl=1.5",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _healthy(url), 40), processes.logs()
    status = wait_for(lambda: _status_if_settled(folder), 20)
    assert status, processes.logs()
    _run_a_job(url)

    state = (folder / "cluster.json").read_text()
    pids = [int(p) for p in __import__("re").findall(r'"pid": (\d+)', state)]
    assert len(pids) == 7, state
    cluster.send_signal(signal.SIGTERM)
    assert cluster.wait(40) == 0, processes.logs()
    assert wait_for(lambda: not any(pid_alive(p) for p in pids), 10), "a role outlived the cluster"
    assert not (folder / "cluster.json").exists()


def _status_if_settled(folder: Path) -> str | None:
    out = subprocess.run(
        chronoq_argv("cluster", "status", "--folder", str(folder)),
        capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    settled = "leader: coordinator-" in out and "shards assigned: 256" in out
    return out if settled else None


def test_a_second_process_with_a_live_node_id_is_refused(dsn: str, processes: Processes) -> None:
    common = ["--store", dsn, *FAST]
    first = processes.start("worker-a", "worker", "--node-id", "twin", *common)
    assert wait_for(lambda: "twin" in _members(dsn), 20), processes.logs()
    second = processes.start("worker-b", "worker", "--node-id", "twin", *common)
    assert second.wait(30) == 1, processes.logs()
    assert (
        "node id 'twin' is in use by a live worker" in (processes.root / "worker-b.log").read_text()
    )
    assert first.poll() is None, "the live owner of the id must be unaffected"


def _members(dsn: str) -> str:
    return subprocess.run(
        ["psql", dsn, "-Atc", "SELECT member_id FROM members"],
        capture_output=True, text=True, timeout=10,
    ).stdout  # fmt: skip


def test_buffered_ingestion_through_a_writer_process(dsn: str, processes: Processes) -> None:
    """--ingest log: the api answers 201 once a job is in the submission log; only a
    writer process moves it into the store, where pickers find it."""
    port = free_port()
    common = ["--store", dsn, "--ingest", "log", *FAST]
    processes.start("api", "api", "--port", str(port), "--node-id", "api-1", *common)
    for role in ("coordinator", "picker", "worker"):
        processes.start(role, role, "--node-id", f"{role}-1", *common)
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _healthy(url), 30), processes.logs()
    with make_client(url, new_user("log")) as api:
        r = api.post("/submit", json={"project_id": "log", "payload": "buffered"})
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        # Accepted and readable, but no writer yet: it must not run.
        assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "ACCEPTED"
        assert not wait_for(lambda: completed(api.get(f"/v1/jobs/{job_id}/runs")
                                              .json()["items"]), 1.5)  # fmt: skip
        processes.start("writer", "writer", "--node-id", "writer-1", *common)
        runs = wait_runs(api, job_id, lambda rs: bool(completed(rs)), 20, "a run")
        assert completed(runs)[0]["output"] == "Success: buffered"
        assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "COMPLETED"


def test_a_writer_without_a_log_is_refused(dsn: str, processes: Processes) -> None:
    writer = processes.start("writer", "writer", "--store", dsn)
    assert writer.wait(30) == 1
    assert "--ingest log" in (processes.root / "writer.log").read_text()


@pytest.mark.parametrize("new_worker", ["worker-3", "worker-1"])
def test_a_job_on_killed_workers_completes_on_a_new_one_within_15_seconds(
    dsn: str, processes: Processes, new_worker: str
) -> None:
    """The seed's scenario: an 8 s job, every worker SIGKILLed ~2 s in, a new worker
    started — under a new id, or restarted under the dead one's (a new incarnation, so a
    new lease owner). Leases are 30 s and the member ttl 3 s (the defaults): only
    membership can bring the run back in time, as an INTERRUPTED attempt, then a new one."""
    port = free_port()
    common = ["--store", dsn]
    processes.start("coord", "coordinator", "--node-id", "coord-1", *common)
    trusted_at = time.monotonic() + 3.0 + 1.0 + 2.0  # member ttl + a beat, and a margin
    processes.start("api", "api", "--port", str(port), "--node-id", "api-1", *common)
    processes.start("picker", "picker", "--node-id", "picker-1", *common)
    workers = ["worker-1", "worker-2"]
    for name in workers:
        processes.start(name, "worker", "--node-id", name, *common)
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _healthy(url), 30), processes.logs()
    wait_for(lambda: time.monotonic() >= trusted_at, 30)  # the leader trusts membership

    with make_client(url, new_user("kill")) as api:
        r = api.post("/submit", json={"project_id": "kill", "payload": "sleep:8s"})
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        running = wait_runs(api, job_id, lambda rs: bool(rs) and bool(rs[0]["started_at"]),
                            20, "the run to start")  # fmt: skip
        assert running[0]["worker_id"].split("#")[0] in workers
        started = time.monotonic()
        wait_for(lambda: time.monotonic() >= started + 2.0, 5)
        for name in workers:
            signal_group(processes.procs[name].pid, signal.SIGKILL)
        killed = time.monotonic()
        processes.start("new-worker", "worker", "--node-id", new_worker, *common)

        runs = wait_runs(api, job_id, lambda rs: bool(completed(rs)), 30, "a completed run")
        took = time.monotonic() - killed
        assert took <= 15.0, f"completed {took:.1f} s after the kill\n{processes.logs()}"
        first, *_, last = by_attempt(runs)
        assert (first["attempt"], first["status"]) == (1, "INTERRUPTED"), runs
        assert first["error_message"] == LOST_TO_MEMBERSHIP, runs
        assert last["status"] == "COMPLETED", runs
        assert last["worker_id"].startswith(new_worker + "#"), runs
        assert last["worker_id"] != first["worker_id"], runs
        assert last["output"] == "Slept 8s"
        assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "COMPLETED"
