"""``chronoq cluster up --with s3,sqs,redis,etcd`` (issue 8.7): the seed-shaped stack
without Docker. The servers start next to the roles, the roles use them (payloads in
S3, submissions through the Redis log, runs through SQS, leadership on etcd),
``cluster status`` shows each backend's health, and stopping the cluster stops every
server. A missing program is one line naming the package, and nothing starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.processes import (
    chronoq_argv,
    clean_env,
    free_port,
    pids_with_token,
    spawn,
    stop_group,
)
from tests.support.waiting import wait_for

from .helpers import RUN_TERMINAL, make_client, new_user, submit, wait_runs


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_the_seed_shaped_stack_runs_jobs_and_reports_its_backends(tmp_path: Path) -> None:
    folder = tmp_path / "cluster"
    port = free_port()
    log = tmp_path / "cluster.log"
    command = chronoq_argv(
        "cluster", "up", "--with", "s3,sqs,redis,etcd", "--api", "1", "--pickers", "1",
        "--workers", "1", "--coordinators", "1", "--port", str(port), "--folder", str(folder),
    )  # fmt: skip
    cluster = spawn(command, log, env=clean_env(), cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url) or cluster.poll() is not None, 90, interval=0.2)
        assert cluster.poll() is None, log.read_text()[-3000:]
        state = json.loads((folder / "cluster.json").read_text())
        assert set(state["backends"]) == {"s3", "sqs", "redis", "etcd"}
        assert state["coordination"].startswith("etcd://")

        with make_client(url, new_user("stack")) as api:
            big = submit(api, payload="echo " + "x" * 4000)  # offloaded to S3
            shell = submit(api, payload="cmd:echo via-sqs")
            for job_id in (big, shell):
                (run,) = wait_runs(
                    api, job_id, lambda rs: bool(rs) and rs[0]["status"] in RUN_TERMINAL, 60,
                    "a finished run",
                )  # fmt: skip
                assert run["status"] == "COMPLETED", run
            assert api.get(f"/v1/jobs/{big}").json()["payload_offloaded"] is True

        status = subprocess.run(
            chronoq_argv("cluster", "status", "--folder", str(folder)), env=clean_env(),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        for line in ("s3", "sqs", "redis", "etcd"):
            row = next(r for r in status.stdout.splitlines() if r.strip("│ ").startswith(line))
            assert "unreachable" not in row and "no leader" not in row, status.stdout
        assert "leader:" in status.stdout and "worker-1" in status.stdout, status.stdout
    finally:
        stop_group(cluster, grace=30)
    token = str(folder / "backends")
    wait_for(lambda: not pids_with_token(token), 15, interval=0.2)
    assert pids_with_token(token) == [], "a backend server outlived the cluster"


def test_a_missing_backend_program_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "cluster"
    done = subprocess.run(
        chronoq_argv("cluster", "up", "--with", "etcd", "--folder", str(folder)),
        env=clean_env({"PATH": str(tmp_path / "empty")}), capture_output=True, text=True,
        timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "apt-get install etcd-server" in errors[0], done.stderr
    assert not (folder / "postgres").exists()


def test_an_unknown_backend_names_the_choices(tmp_path: Path) -> None:
    done = subprocess.run(
        chronoq_argv("cluster", "up", "--with", "s3,kafka", "--folder", str(tmp_path / "c")),
        env=clean_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    assert "unknown backend(s) kafka; choose from s3, sqs, redis, etcd" in done.stderr
