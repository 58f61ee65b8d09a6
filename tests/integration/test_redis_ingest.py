"""Buffered ingestion through Redis (``--ingest redis://``), with real processes.

A private PostgreSQL (the store) and a private redis-server (AOF, ``appendfsync
always``); an api logging submissions to Redis, two writer processes, a coordinator, a
picker and a worker. PostgreSQL is stopped, 1,000 jobs are submitted (every one 201),
a job still in the log reads as ACCEPTED, Redis is SIGKILLed and restarted (AOF);
PostgreSQL is started again and every job runs exactly once (run rows in the store),
and the log is drained. With Redis down, stored jobs still read and submissions are
refused (503).
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from chronoq.adapters.redis.submissions import RedisSubmissionLog
from chronoq.runtime.pgserver import PrivatePostgres, find_bindir
from chronoq.runtime.servers.redis import RedisServer
from tests.support.postgres import create_database, private_postgres
from tests.support.processes import chronoq_argv, clean_env, free_port, signal_group, spawn
from tests.support.redis_server import redis_factory  # noqa: F401 - a fixture
from tests.support.waiting import stays_false, wait_for

from .helpers import make_client, new_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_bindir() is None and not os.environ.get("CI"), reason="PostgreSQL not installed"
    ),
]

JOBS = 1000
FAST = ["--lease-seconds", "3", "--leader-ttl", "1.5", "--member-ttl", "1.5"]


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres(lambda folder: PrivatePostgres(folder, fast=True)) as server:
        yield server


class Processes:
    """Role processes of one test, each in its own session; all SIGKILLed at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> None:
        self.procs.append(spawn(chronoq_argv(*args), self.root / f"{name}.log",
                                env=clean_env(), cwd=self.root))  # fmt: skip

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("*.log"))
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.close()


def _sql(dsn: str, query: str) -> str:
    return subprocess.run(
        ["psql", dsn, "-Atc", query], capture_output=True, text=True, timeout=20, check=True
    ).stdout.strip()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_jobs_submitted_while_postgres_is_down_all_run_exactly_once(
    postgres: PrivatePostgres, processes: Processes, request: pytest.FixtureRequest
) -> None:
    redis_server: RedisServer = request.getfixturevalue("redis_factory")()  # AOF, fsync always
    dsn = create_database(postgres.dsn, f"t_{uuid.uuid4().hex[:10]}")
    common = ["--store", dsn, "--ingest", redis_server.url, *FAST]
    port = free_port()
    processes.start("api", "api", "--port", str(port), "--node-id", "api-1", *common)
    for name in ("coordinator", "picker", "worker", "writer-1", "writer-2"):
        processes.start(name, name.split("-")[0], "--node-id", name, *common)
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _healthy(url), 30), processes.logs()
    # Every role running (a role refuses to start on an unreachable store, by design).
    everyone = {"api-1", "coordinator", "picker", "worker", "writer-1", "writer-2"}
    members = "SELECT member_id FROM members"
    assert wait_for(lambda: everyone <= set(_sql(dsn, members).split()), 30), processes.logs()
    user = new_user("ingest")

    postgres.stop()
    with make_client(url, user) as api:
        assert api.get(f"/v1/jobs/{uuid.uuid4()}").status_code == 503  # not a false 404

    with make_client(url, user) as shared, ThreadPoolExecutor(8) as pool:  # a client is thread-safe

        def submit(i: int) -> tuple[int, str]:
            r = shared.post("/v1/jobs", json={"project_id": "ingest", "payload": f"job-{i}"})
            return r.status_code, r.json().get("job_id", r.text)

        answers = list(pool.map(submit, range(JOBS)))
    assert [code for code, _ in answers] == [201] * JOBS, answers[:5]
    job_ids = [job_id for _, job_id in answers]
    assert len(set(job_ids)) == JOBS

    with make_client(url, user) as api:
        seen = api.get(f"/v1/jobs/{job_ids[17]}")
        assert seen.status_code == 200, seen.text
        assert seen.json()["status"] == "ACCEPTED"
        assert seen.json()["payload"] == "job-17"
        other = api.get(f"/v1/jobs/{job_ids[17]}", headers={"X-User-ID": "mallory"})
        assert other.status_code == 503  # not in mallory's log: the store (down) decides
    assert _log_length(redis_server) == (JOBS, JOBS)  # all waiting in Redis
    redis_server.kill()  # a crash of Redis too: appendfsync always kept every 201
    redis_server.start()
    assert _log_length(redis_server) == (JOBS, JOBS)

    postgres.start()
    done = f"SELECT count(*) FROM job_runs WHERE user_id = '{user}' AND status = 'COMPLETED'"
    assert wait_for(lambda: int(_sql(dsn, done) or 0) == JOBS, 120), (
        _sql(dsn, f"SELECT status, count(*) FROM job_runs WHERE user_id = '{user}' GROUP BY 1"),
        processes.logs(),
    )
    runs = f"SELECT count(*) FROM job_runs WHERE user_id = '{user}'"
    assert stays_false(lambda: int(_sql(dsn, runs)) != JOBS, 2.0)  # and no second run comes
    per_job = _sql(dsn, f"SELECT job_id, count(*) FROM job_runs WHERE user_id = '{user}'"
                        " GROUP BY job_id")  # fmt: skip
    counts = dict(line.split("|") for line in per_job.splitlines())
    assert sorted(counts) == sorted(job_ids)
    assert set(counts.values()) == {"1"}  # every job ran exactly once
    assert _sql(dsn, f"SELECT count(*) FROM jobs WHERE user_id = '{user}'") == str(JOBS)
    assert wait_for(lambda: _log_length(redis_server) == (0, 0), 10)  # acknowledged: drained

    with make_client(url, user) as api:
        job = api.get(f"/v1/jobs/{job_ids[17]}").json()
        assert job["status"] == "COMPLETED"

        redis_server.kill()  # the log is down: stored jobs still read, submissions are 503
        assert api.get(f"/v1/jobs/{job_ids[3]}").json()["status"] == "COMPLETED"
        assert api.get(f"/v1/jobs/{uuid.uuid4()}").status_code == 503  # might be in the log
        r = api.post("/v1/jobs", json={"project_id": "ingest", "payload": "late"})
        assert r.status_code == 503, r.text


def _log_length(server: RedisServer) -> tuple[int, int]:
    """Entries in the stream and in the ``get_job`` index (both must drain)."""
    log = RedisSubmissionLog.from_url(server.url)
    client = redis.Redis.from_url(server.url)
    try:
        return int(client.xlen(log.stream)), int(client.hlen(log.index))
    finally:
        client.close()
