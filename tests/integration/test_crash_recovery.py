"""kill -9 after 201, then restart: nothing accepted is lost, no fire runs twice.

The shell jobs append to a ledger file the test owns, a record of actual
executions that the server cannot write for itself.
"""

from __future__ import annotations

import shlex
import uuid
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from chronoq.domain.clock import format_rfc3339
from tests.support.times import parse_ts, utcnow
from tests.support.waiting import stays_false, wait_for

from .helpers import (
    RUN_TERMINAL,
    by_attempt,
    completed,
    get_job,
    get_runs,
    list_jobs,
    make_client,
    new_user,
    wait_job_status,
    wait_runs,
)

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from .conftest import ServerFactory, ServerHandle

pytestmark = pytest.mark.slow

LEASE = "2"


def _ledger_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _check_fire_invariants(runs: list[dict[str, Any]]) -> None:
    keys = Counter((r["scheduled_for"], r["attempt"]) for r in runs)
    dupes = [k for k, n in keys.items() if n > 1]
    assert not dupes, f"duplicate (scheduled_for, attempt): {dupes}; runs: {runs}"
    terminal = Counter(r["scheduled_for"] for r in runs if r["status"] in RUN_TERMINAL)
    multi = [k for k, n in terminal.items() if n > 1]
    assert not multi, f"more than one terminal run for fires {multi}; runs: {runs}"


def test_scheduled_job_survives_kill_9_and_runs_once(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory("--lease-seconds", LEASE)
    ledger = tmp_path / "ledger"
    fire_at = utcnow() + timedelta(seconds=2)
    with make_client(server.url, new_user("crash")) as api:
        r = api.post(
            "/submit",
            json={
                "project_id": "crash",
                "payload": f"cmd:echo fired >> {shlex.quote(str(ledger))}",
                "next_fire_at": format_rfc3339(fire_at),
            },
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        server.kill()
        assert _ledger_lines(ledger) == [], "killed before the fire time"

        server.start()
        runs = wait_runs(api, job_id, lambda rs: bool(completed(rs)), 15, "a COMPLETED run")
        assert wait_for(lambda: _ledger_lines(ledger) == ["fired"], 2), _ledger_lines(ledger)
        assert stays_false(lambda: len(_ledger_lines(ledger)) > 1, 1.5), "ran twice"
        runs = get_runs(api, job_id)
        assert len(runs) == 1, runs
        assert abs(parse_ts(runs[0]["scheduled_for"]) - fire_at) < timedelta(milliseconds=1)
        assert parse_ts(runs[0]["started_at"]) >= fire_at - timedelta(milliseconds=1)
        assert get_job(api, job_id)["status"] == "COMPLETED"


def test_burst_of_accepted_jobs_survives_kill_9(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory("--lease-seconds", LEASE)
    user = new_user("burst")
    ledger = tmp_path / "ledger"
    with make_client(server.url, user) as api:
        ids = []
        for i in range(30):
            r = api.post(
                "/submit",
                json={
                    "project_id": "burst",
                    "payload": f"cmd:echo {i} >> {shlex.quote(str(ledger))}",
                    # No retries: a run cut short by the crash comes back anyway, as
                    # attempt 2 after an INTERRUPTED attempt 1 (not the job's failure).
                    "max_retries": 0,
                },
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["job_id"])
        server.kill()
        server.start()
        assert {j["job_id"] for j in list_jobs(api)} == set(ids), "an accepted job was lost"
        done = wait_for(lambda: all(get_job(api, i)["status"] == "COMPLETED" for i in ids), 20, 0.2)
        assert done, [
            (get_job(api, i)["status"], [(r["attempt"], r["status"]) for r in get_runs(api, i)])
            for i in ids
        ]
        for job_id in ids:
            runs = get_runs(api, job_id)
            _check_fire_invariants(runs)
            assert len(completed(runs)) == 1, runs
        lines = Counter(_ledger_lines(ledger))
        assert set(lines) == {str(i) for i in range(30)}, lines
        # A job killed mid-execution runs again (attempt 2) only after an INTERRUPTED attempt.
        for line, n in lines.items():
            runs = get_runs(api, ids[int(line)])
            interrupted = [r for r in runs if r["status"] == "INTERRUPTED"]
            assert n <= 1 + len(interrupted), (line, n, runs)


def test_recurring_job_continues_after_kill_9(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory("--lease-seconds", LEASE)
    ledger = tmp_path / "ledger"
    with make_client(server.url, new_user("crash")) as api:
        r = api.post(
            "/submit",
            json={
                "project_id": "crash",
                "payload": f"cmd:echo tick >> {shlex.quote(str(ledger))}",
                "cron_schedule": "*/1 * * * * *",
            },
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        wait_runs(api, job_id, lambda rs: len(completed(rs)) >= 2, 6, ">= 2 COMPLETED runs")

        server.kill()
        killed_at = utcnow()
        server.start()
        restarted_at = utcnow()
        wait_runs(
            api,
            job_id,
            lambda rs: sum(parse_ts(r["scheduled_for"]) > restarted_at for r in completed(rs)) >= 2,
            10,
            ">= 2 COMPLETED runs after the restart",
        )

        r = api.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        settle = float(LEASE) * 2 + 5
        runs = wait_runs(
            api,
            job_id,
            lambda rs: all(r["status"] not in ("QUEUED", "RUNNING") for r in rs),
            settle,
            "every run settled",
        )
        _check_fire_invariants(runs)
        for run in runs:
            if run["started_at"] is not None:
                started = parse_ts(run["started_at"])
                assert started >= parse_ts(run["scheduled_for"]) - timedelta(milliseconds=1), run
        fires = [parse_ts(r["scheduled_for"]) for r in runs]
        assert all(f.microsecond == 0 for f in fires), "cron fires are on whole seconds"
        # Ledger vs. runs: every COMPLETED run really executed; no execution without a run.
        executions = len(_ledger_lines(ledger))
        started_runs = sum(r["started_at"] is not None for r in runs)
        assert len(completed(runs)) <= executions <= started_runs, (executions, runs)
        assert killed_at < restarted_at


def _interrupted_job(
    server: ServerHandle, api: httpx.Client, tmp_path: Path, sweep: list[str], max_retries: int
) -> tuple[str, Path]:
    """Start a 3 s shell job, kill -9 the server while it runs, restart; return the job."""
    ledger = tmp_path / "ledger"
    seconds = f"3.{uuid.uuid4().int % 10**6:06d}"
    sweep.append(seconds)
    payload = f"cmd:echo start >> {shlex.quote(str(ledger))}; sleep {seconds}"
    r = api.post(
        "/v1/jobs", json={"project_id": "crash", "payload": payload, "max_retries": max_retries}
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    assert wait_for(lambda: _ledger_lines(ledger), 10), "the job never started"
    server.kill()
    server.start()
    return job_id, ledger


def test_run_interrupted_by_kill_9_is_redelivered_without_using_a_retry(
    server_factory: ServerFactory, tmp_path: Path, proc_sweeper: list[str]
) -> None:
    server = server_factory("--lease-seconds", LEASE)
    with make_client(server.url, new_user("crash")) as api:
        job_id, ledger = _interrupted_job(server, api, tmp_path, proc_sweeper, 1)
        job = wait_job_status(api, job_id, {"COMPLETED", "FAILED", "CANCELLED"}, 20)
        runs = by_attempt(get_runs(api, job_id))
        assert job["status"] == "COMPLETED", (job, runs)
        assert [(r["attempt"], r["status"], r["interruptions"]) for r in runs] == [
            (1, "INTERRUPTED", 0),
            (2, "COMPLETED", 1),
        ], runs
        assert runs[0]["error_message"].startswith("interrupted:"), runs
        _check_fire_invariants(runs)
        assert _ledger_lines(ledger) == ["start", "start"]


def test_run_interrupted_by_kill_9_without_retries_is_redelivered(
    server_factory: ServerFactory, tmp_path: Path, proc_sweeper: list[str]
) -> None:
    """A crash is not the job's failure: even with max_retries 0 the fire runs again."""
    server = server_factory("--lease-seconds", LEASE)
    with make_client(server.url, new_user("crash")) as api:
        job_id, ledger = _interrupted_job(server, api, tmp_path, proc_sweeper, 0)
        job = wait_job_status(api, job_id, {"COMPLETED", "FAILED", "CANCELLED"}, 20)
        runs = by_attempt(get_runs(api, job_id))
        assert job["status"] == "COMPLETED", (job, runs)
        assert [(r["attempt"], r["status"]) for r in runs] == [
            (1, "INTERRUPTED"),
            (2, "COMPLETED"),
        ], runs
        _check_fire_invariants(runs)
        assert _ledger_lines(ledger) == ["start", "start"]
