"""Crashes are not the job's failures (issue "Foundations", finding 8).

Several clients submit ``cmd:`` jobs with the default ``max_retries`` (0) while
``chronoq up`` is SIGKILLed and restarted three times within a few seconds. Every
job appends ``<job id> <attempt>`` to a ledger file when it executes. Afterwards:

* every acknowledged job (201) ends COMPLETED — a crash never spends the job's
  own retries, and three crashes stay within the interruption budget (3);
* a job appears in the ledger more than once only if its run history shows an
  INTERRUPTED attempt (a run lost before it started is requeued and never ran),
  and every ledger line is an attempt the store knows.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support.waiting import wait_for

from .helpers import JOB_TERMINAL, get_job, get_runs, make_client, new_user

if TYPE_CHECKING:
    from .conftest import ServerFactory, ServerHandle

pytestmark = pytest.mark.slow

CLIENTS = 4
KILLS = 3
UP_BEFORE_KILL = 1.2
"""Seconds each server life lasts before its SIGKILL (jobs are in flight by then)."""
JOB_SECONDS = 0.4
"""How long each job runs after writing its ledger line: many are mid-run at a kill."""


class Clients:
    """Threads submitting jobs until told to stop; only 201s count as acknowledged."""

    def __init__(self, url: str, payload: str) -> None:
        self.url = url
        self.payload = payload
        self.user = new_user("crash")
        self.acknowledged: list[str] = []
        self.refused = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._submit, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(20)

    def _submit(self) -> None:
        with make_client(self.url, self.user, timeout=5.0) as api:
            while not self.stop.is_set():
                try:
                    r = api.post("/submit", json={"project_id": "crash", "payload": self.payload})
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code == 201:
                    with self.lock:
                        self.acknowledged.append(r.json()["job_id"])
                else:  # the server is down (or restarting): not acknowledged, try again
                    with self.lock:
                        self.refused += 1
                    self.stop.wait(0.05)
                    continue
                self.stop.wait(0.02)


def _read_ledger(ledger: Path) -> dict[str, list[int]]:
    attempts: dict[str, list[int]] = defaultdict(list)
    for line in ledger.read_text().splitlines():
        job_id, attempt = line.split()
        attempts[job_id].append(int(attempt))
    return attempts


def test_acknowledged_jobs_complete_and_duplicates_are_interrupted_attempts(
    server_factory: ServerFactory, tmp_path: Path, proc_sweeper: list[str]
) -> None:
    ledger = tmp_path / "ledger"
    ledger.touch()
    token = f"{JOB_SECONDS}{uuid.uuid4().int % 10**6:06d}"  # a unique `sleep` argument
    proc_sweeper.append(token)
    payload = f'cmd:echo "$CHRONOQ_JOB_ID $CHRONOQ_ATTEMPT" >> {ledger}; sleep {token}'
    server: ServerHandle = server_factory(name="crashing")
    with Clients(server.url, payload) as clients:
        for _ in range(KILLS):
            time.sleep(UP_BEFORE_KILL)  # let jobs be claimed, started, mid-run
            server.kill()
            server.start()
        time.sleep(UP_BEFORE_KILL)
    acknowledged = list(clients.acknowledged)
    assert len(acknowledged) >= 50, (len(acknowledged), clients.refused)

    with make_client(server.url, clients.user) as api:

        def unfinished() -> list[str]:
            return [j for j in acknowledged if get_job(api, j)["status"] not in JOB_TERMINAL]

        left = wait_for(lambda: not unfinished(), 40, interval=0.5)
        assert left, f"jobs not finished: {unfinished()[:5]}\n{server.log_tail()}"
        runs = {job_id: get_runs(api, job_id) for job_id in acknowledged}

    executed = _read_ledger(ledger)
    statuses = Counter(r["status"] for rs in runs.values() for r in rs)
    problems: list[str] = []
    for job_id in acknowledged:
        history = sorted(runs[job_id], key=lambda r: r["attempt"])
        final = history[-1]
        if final["status"] != "COMPLETED":
            problems.append(f"{job_id} ended {final['status']}: {history}")
        interrupted = {r["attempt"] for r in history if r["status"] == "INTERRUPTED"}
        lines = executed.get(job_id, [])
        if len(lines) > 1 and not interrupted:
            problems.append(f"{job_id} executed {lines} without an INTERRUPTED attempt")
        if len(lines) != len(set(lines)):
            problems.append(f"{job_id}: one attempt executed twice: {lines}")
        if set(lines) - {r["attempt"] for r in history}:
            problems.append(f"{job_id}: ledger attempts {lines} unknown to the store {history}")
        if final["attempt"] not in lines:
            problems.append(f"{job_id}: completed attempt {final['attempt']} never executed")
        if any(r["interruptions"] != len(interrupted & set(range(r["attempt"]))) for r in history):
            problems.append(f"{job_id}: interruptions do not count INTERRUPTED attempts {history}")
    duplicated = sum(1 for lines in executed.values() if len(lines) > 1)
    summary: dict[str, Any] = {
        "acknowledged": len(acknowledged),
        "refused while down": clients.refused,
        "run statuses": dict(statuses),
        "jobs executed more than once": duplicated,
    }
    print(f"crash scenario: {summary}")  # the figures, shown with -s
    assert not problems, "\n".join(problems[:10]) + f"\n{summary}"
    assert statuses["INTERRUPTED"] > 0, f"no run was cut off by the kills: {summary}"
