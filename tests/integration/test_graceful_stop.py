"""SIGTERM while a job runs: the server exits 0 promptly and the job is not lost."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from .helpers import (
    RUN_TERMINAL,
    completed,
    get_runs,
    make_client,
    new_user,
    submit,
    wait_job_status,
    wait_runs,
)

if TYPE_CHECKING:
    from .conftest import ServerFactory

pytestmark = pytest.mark.slow


def test_sigterm_during_a_run_then_restart(server_factory: ServerFactory) -> None:
    server = server_factory()
    with make_client(server.url, new_user("stop")) as api:
        job_id = submit(api, payload="sleep:3s")
        wait_runs(api, job_id, lambda rs: any(r["status"] == "RUNNING" for r in rs), 5, "RUNNING")

        t0 = time.monotonic()
        code = server.stop(timeout=10)
        took = time.monotonic() - t0
        assert code == 0, f"exit code {code} after SIGTERM\n{server.log_tail()}"
        assert took < 8, f"took {took:.1f}s to stop"

        server.start()
        job = wait_job_status(api, job_id, {"COMPLETED", "FAILED", "CANCELLED"}, 15)
        assert job["status"] == "COMPLETED", (job, get_runs(api, job_id))
        runs = get_runs(api, job_id)
        assert len(completed(runs)) == 1, runs
        terminal = Counter(r["scheduled_for"] for r in runs if r["status"] in RUN_TERMINAL)
        assert all(n == 1 for n in terminal.values()), runs
        keys = Counter((r["scheduled_for"], r["attempt"]) for r in runs)
        assert all(n == 1 for n in keys.values()), runs


def test_sigterm_when_idle_exits_0_quickly(server_factory: ServerFactory) -> None:
    server = server_factory()
    t0 = time.monotonic()
    assert server.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 5
    server.start()  # and the same port and data dir come back
    with make_client(server.url, new_user("stop")) as api:
        job_id = submit(api, payload="after-restart")
        runs = wait_runs(api, job_id, lambda rs: bool(completed(rs)), 10, "COMPLETED")
        assert runs[0]["output"] == "Success: after-restart"


def test_sigint_also_stops_gracefully(server_factory: ServerFactory) -> None:
    import signal

    server = server_factory()
    assert server.proc is not None
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(10) == 0


def test_run_handed_back_at_sigterm_completes_after_restart(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--shutdown-grace", "0.5")
    with make_client(server.url, new_user("stop")) as api:
        job_id = submit(api, payload="sleep:4s")
        wait_runs(api, job_id, lambda rs: any(r["status"] == "RUNNING" for r in rs), 5, "RUNNING")

        t0 = time.monotonic()
        assert server.stop(timeout=10) == 0, server.log_tail()
        assert time.monotonic() - t0 < 3, "a 0.5 s grace must not wait for a 4 s job"

        server.start()
        job = wait_job_status(api, job_id, {"COMPLETED", "FAILED", "CANCELLED"}, 15)
        assert job["status"] == "COMPLETED", (job, get_runs(api, job_id))
        runs = get_runs(api, job_id)
        assert len(completed(runs)) == 1, runs
        keys = Counter((r["scheduled_for"], r["attempt"]) for r in runs)
        assert all(n == 1 for n in keys.values()), runs
