"""``chronoq up --worker-processes N``: the worker role in child processes, on one SQLite file.

Jobs run in the children and are counted in the parent's /metrics; a child killed
mid-run has its run handed back within seconds (the lease is 30 s, so only the
parent's knowledge of its children explains a fast return) and is started again; the
children die with the parent and hold the data dir until they have.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import (
    children_map,
    chronoq_argv,
    clean_env,
    pid_alive,
    pids_with_token,
    signal_group,
)
from tests.support.waiting import wait_for

from .helpers import (
    RUN_TERMINAL,
    by_attempt,
    get_runs,
    make_client,
    new_user,
    submit,
    unique_sleep_seconds,
    wait_job_status,
    wait_runs,
)

if TYPE_CHECKING:
    from .conftest import ServerFactory

pytestmark = pytest.mark.slow

CHILD = "chronoq.runtime.worker_child"


def worker_children(parent: int) -> list[int]:
    """The worker processes of the node whose pid is ``parent``."""
    children = set(children_map().get(parent, []))
    return sorted(pid for pid in pids_with_token(CHILD) if pid in children)


def completed_in_metrics(text: str) -> float:
    """``runs_finished_total{status="COMPLETED"}``; each family written once."""
    names = [family.name for family in text_string_to_metric_families(text)]
    assert len(names) == len(set(names)), f"a family written twice: {sorted(names)}"
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "runs_finished_total" and sample.labels == {"status": "COMPLETED"}:
                return sample.value
    return 0.0


def test_jobs_run_in_the_worker_processes_and_the_node_counts_them(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--worker-processes", "2")
    assert server.proc is not None
    assert len(worker_children(server.proc.pid)) == 2
    with make_client(server.url, new_user("wp")) as api:
        r = api.post("/v1/jobs:batch", json={"jobs": [{"project_id": "wp", "payload": f"j{i}"}
                                                      for i in range(60)]})  # fmt: skip
        assert r.status_code == 201, r.text
        ids = [job["job_id"] for job in r.json()["items"]]
        for job_id in ids:
            wait_job_status(api, job_id, {"COMPLETED"}, 20)
        owners = {get_runs(api, job_id)[0]["worker_id"] for job_id in ids}
        assert owners and all("/worker-" in owner for owner in owners), owners
        # /metrics merges the children's files, refreshed every second
        assert wait_for(lambda: completed_in_metrics(api.get("/metrics").text) == 60, 10), api.get(
            "/metrics"
        ).text


def test_a_killed_worker_process_hands_its_run_back_and_is_started_again(
    server_factory: ServerFactory, tmp_path: Path, proc_sweeper: list[str]
) -> None:
    server = server_factory("--worker-processes", "1", "--lease-seconds", "30")
    assert server.proc is not None
    [first] = worker_children(server.proc.pid)
    ledger = tmp_path / "ledger"
    seconds = "2.4242"
    proc_sweeper.append(seconds)
    payload = f"cmd:echo start >> {shlex.quote(str(ledger))}; sleep {seconds}"
    with make_client(server.url, new_user("wp")) as api:
        r = api.post("/v1/jobs", json={"project_id": "wp", "payload": payload})
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        assert wait_for(ledger.exists, 10), "the job never started"
        os.kill(first, signal.SIGKILL)
        # well within the 30 s lease: handed back because the parent saw the child die
        job = wait_job_status(api, job_id, {"COMPLETED", "FAILED"}, 15)
        runs = by_attempt(get_runs(api, job_id))
        assert job["status"] == "COMPLETED", (job, runs)
        assert [(run["attempt"], run["status"]) for run in runs] == [
            (1, "INTERRUPTED"),
            (2, "COMPLETED"),
        ], runs
        assert runs[0]["worker_id"] != runs[1]["worker_id"]  # a new incarnation ran it
    assert ledger.read_text().splitlines() == ["start", "start"]
    [second] = worker_children(server.proc.pid)
    assert second != first
    assert "worker process 0" in server.log_tail() and "exited with status" in server.log_tail()


def test_a_cancel_reaches_the_job_in_a_worker_process_at_once(
    server_factory: ServerFactory, proc_sweeper: list[str]
) -> None:
    """The lease is 60 s (renewed every 20 s): a kill within seconds came with the hint."""
    server = server_factory("--worker-processes", "1", "--lease-seconds", "60")
    seconds = unique_sleep_seconds()
    proc_sweeper.append(seconds)
    with make_client(server.url, new_user("wp")) as api:
        job_id = submit(api, payload=f"cmd:sleep {seconds}")
        wait_runs(api, job_id, lambda rs: rs[0]["status"] == "RUNNING", 10, "RUNNING")
        assert wait_for(lambda: pids_with_token(seconds), 5), "the job never started"
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 200
        runs = wait_runs(api, job_id, lambda rs: rs[0]["status"] in RUN_TERMINAL, 8, "an end")
        assert [run["status"] for run in runs] == ["CANCELLED"], runs
        assert wait_for(lambda: not pids_with_token(seconds), 5), pids_with_token(seconds)


def test_the_worker_processes_die_with_the_node_and_hold_its_data_dir_until_then(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--worker-processes", "2")
    assert server.proc is not None
    children = worker_children(server.proc.pid)
    assert len(children) == 2
    os.kill(server.proc.pid, signal.SIGKILL)  # the parent alone, not its process group
    server.proc.wait(10)
    assert wait_for(lambda: not any(pid_alive(pid) for pid in children), 20), children
    server.start()  # the data-dir lock is free once every child has gone
    with make_client(server.url, new_user("wp")) as api:
        r = api.post("/v1/jobs", json={"project_id": "wp", "payload": "after"})
        assert r.status_code == 201, r.text
        wait_job_status(api, r.json()["job_id"], {"COMPLETED"}, 20)


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["sigterm", "ctrl-c"])
def test_a_graceful_stop_stops_the_worker_processes(
    server_factory: ServerFactory, ctrl_c: bool
) -> None:
    """SIGTERM to the node, or Ctrl-C (SIGINT to the whole process group, as a terminal
    sends it): the node stops its children, and none is mistaken for a crash."""
    server = server_factory("--worker-processes", "2")
    assert server.proc is not None
    children = worker_children(server.proc.pid)
    if ctrl_c:
        signal_group(server.proc.pid, signal.SIGINT)
        assert server.proc.wait(15) == 0
    else:
        assert server.stop() == 0
    assert not any(pid_alive(pid) for pid in children)
    assert not list((server.data_dir / "metrics").glob("*.prom"))
    assert "exited with status" not in server.log_tail(), server.log_tail()


def test_worker_processes_need_the_whole_node(tmp_path: Path) -> None:
    """A node without its coordinator could not hand back a dead child's runs."""
    argv = chronoq_argv("worker", "--data-dir", str(tmp_path / "data"), "--worker-processes", "1")
    done = subprocess.run(argv, env=clean_env(), capture_output=True, timeout=60, check=False)
    assert done.returncode == 1, done
    assert b"--worker-processes runs with every role: use chronoq up" in done.stderr
