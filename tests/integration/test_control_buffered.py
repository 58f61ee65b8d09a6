"""Idempotency keys and job control with buffered ingestion (``--ingest log``, PostgreSQL):
a keyed job still waiting in the submission log replays (200, ``ACCEPTED``), control
calls on it answer 409 until a writer has moved it, and concurrent duplicates make one
job — their derived job id collapses them in the writer's idempotent move."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.postgres import create_database, drop_database
from tests.support.processes import chronoq_argv, clean_env, free_port, signal_group, spawn
from tests.support.waiting import wait_for

from .auth_support import postgres_problem
from .helpers import assert_error, list_jobs, make_client, new_user

pytestmark = pytest.mark.slow
ADMIN_DSN = os.environ.get(
    "CHRONOQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
FAST = ["--lease-seconds", "3", "--leader-ttl", "1.5", "--member-ttl", "1.5"]
BODY = {"project_id": "log", "payload": "buffered", "cron_schedule": "0 3 * * *"}


class Roles:
    def __init__(self, root: Path, dsn: str) -> None:
        self.root, self.dsn = root, dsn
        self.procs: list[subprocess.Popen[bytes]] = []
        self.url = ""

    def start(self, role: str, *args: str) -> None:
        argv = chronoq_argv(role, "--store", self.dsn, "--ingest", "log", *FAST, *args)
        self.procs.append(spawn(argv, self.root / f"{role}.log", env=clean_env(), cwd=self.root))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.root.glob("*.log"))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[Roles]:
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    name = f"ctl_{uuid.uuid4().hex[:10]}"
    procs = Roles(tmp_path, create_database(ADMIN_DSN, name))
    port = free_port()
    procs.start("api", "--port", str(port), "--node-id", "api-1")
    procs.url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _healthy(procs.url), 30), procs.logs()
    try:
        yield procs
    finally:
        procs.close()
        drop_database(ADMIN_DSN, name)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _post(api: httpx.Client, body: dict[str, Any], key: str) -> httpx.Response:
    return api.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})


def test_a_keyed_job_in_the_log_replays_and_refuses_control_until_moved(roles: Roles) -> None:
    with make_client(roles.url, new_user("log")) as api:
        first = _post(api, BODY, "log-key")
        assert first.status_code == 201, first.text
        job_id = first.json()["job_id"]
        again = _post(api, BODY, "log-key")
        assert again.status_code == 200, again.text
        assert again.json()["job_id"] == job_id and again.json()["status"] == "ACCEPTED"
        for verb in ("pause", "resume", "trigger"):
            assert_error(api.post(f"/v1/jobs/{job_id}:{verb}"), 409, "conflict")
        assert_error(api.patch(f"/v1/jobs/{job_id}", json={"max_retries": 1}), 409, "conflict")
        assert_error(api.get(f"/v1/jobs/{job_id}/fires"), 409, "conflict")
        roles.start("writer", "--node-id", "writer-1")
        moved = wait_for(lambda: api.get(f"/v1/jobs/{job_id}").json()["status"] == "PENDING", 30)
        assert moved, roles.logs()
        replay = _post(api, BODY, "log-key")
        assert replay.status_code == 200 and replay.json()["status"] == "PENDING"
        other = _post(api, {**BODY, "payload": "else"}, "log-key")
        assert_error(other, 409, "idempotency_key_reused")
        assert api.post(f"/v1/jobs/{job_id}:pause").json()["status"] == "PAUSED"
        assert [j["job_id"] for j in list_jobs(api)] == [job_id]


def test_concurrent_duplicates_in_the_log_make_one_job(roles: Roles) -> None:
    with make_client(roles.url, new_user("log")) as api:
        barrier = threading.Barrier(10)
        ids: list[str] = []

        def send() -> None:
            barrier.wait()
            r = _post(api, BODY, "log-race")
            assert r.status_code in (200, 201), r.text
            ids.append(r.json()["job_id"])

        threads = [threading.Thread(target=send) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(ids) == 10 and len(set(ids)) == 1
        roles.start("writer", "--node-id", "writer-1")
        assert wait_for(lambda: len(list_jobs(api)) == 1, 30), roles.logs()
        assert [j["job_id"] for j in list_jobs(api)] == ids[:1]
        assert not wait_for(lambda: len(list_jobs(api)) > 1, 1.0)  # no second job appears


def test_a_forgotten_key_makes_a_new_job_through_the_log(roles: Roles) -> None:
    """Retention forgot the key (here: by SQL, as ``forget_idempotency_keys`` does): the
    same key and body make a new job — not an entry the writer would skip as a duplicate
    of the old job's id."""
    roles.start("writer", "--node-id", "writer-1")
    with make_client(roles.url, new_user("log")) as api:
        first = _post(api, BODY, "forget-me").json()["job_id"]
        assert wait_for(lambda: api.get(f"/v1/jobs/{first}").json()["status"] == "PENDING", 30)
        subprocess.run(
            ["psql", roles.dsn, "-Atc", "UPDATE jobs SET idempotency_key = NULL"],
            check=True, capture_output=True, timeout=20,
        )  # fmt: skip
        again = _post(api, BODY, "forget-me")
        assert again.status_code == 201, again.text
        second = again.json()["job_id"]
        assert second != first
        assert wait_for(lambda: len(list_jobs(api)) == 2, 30), roles.logs()
