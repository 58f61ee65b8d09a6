"""A shell job past its `timeout_seconds` is killed with everything it started."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from tests.support.processes import pid_alive, pids_with_token
from tests.support.times import parse_ts
from tests.support.waiting import wait_for

from .helpers import (
    RUN_TERMINAL,
    make_client,
    new_user,
    read_pids,
    submit,
    unique_sleep_seconds,
    wait_job_status,
    wait_runs,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import ServerHandle


def _terminal(runs: list[dict]) -> bool:  # type: ignore[type-arg]
    return bool(runs) and all(r["status"] in RUN_TERMINAL for r in runs)


def _all_dead(pids: list[int], token: str) -> bool:
    return not any(pid_alive(p) for p in pids) and not pids_with_token(token)


def test_timeout_kills_the_shell_and_its_children(
    server: ServerHandle, tmp_path: Path, proc_sweeper: list[str]
) -> None:
    seconds = unique_sleep_seconds()
    proc_sweeper.append(seconds)
    bg_file = shlex.quote(str(tmp_path / "bg.pid"))
    sh_file = shlex.quote(str(tmp_path / "sh.pid"))
    payload = f"cmd:echo $$ > {sh_file}; sleep {seconds} & echo $! > {bg_file}; sleep {seconds}"
    with make_client(server.url, new_user("timeout")) as api:
        job_id = submit(api, payload=payload, timeout_seconds=1)
        got_pids = wait_for(
            lambda: read_pids(tmp_path / "bg.pid") and read_pids(tmp_path / "sh.pid"), 10
        )
        assert got_pids, "the job never started"
        pids = read_pids(tmp_path / "bg.pid") + read_pids(tmp_path / "sh.pid")

        runs = wait_runs(api, job_id, _terminal, 15, "a terminal run")
        assert len(runs) == 1, runs
        run = runs[0]
        assert run["status"] == "TIMED_OUT", run
        took = (parse_ts(run["completed_at"]) - parse_ts(run["started_at"])).total_seconds()
        assert 0.9 <= took < 10, f"killed after {took}s, timeout was 1s: {run}"
        wait_job_status(api, job_id, {"FAILED"}, 5)

        assert wait_for(lambda: _all_dead(pids, seconds), 5), (
            f"left behind: {[p for p in pids if pid_alive(p)]} {pids_with_token(seconds)}"
        )


def test_timeout_kills_a_job_that_ignores_sigterm(
    server: ServerHandle, tmp_path: Path, proc_sweeper: list[str]
) -> None:
    seconds = unique_sleep_seconds()
    proc_sweeper.append(seconds)
    bg_file = shlex.quote(str(tmp_path / "bg.pid"))
    payload = f"cmd:trap '' TERM; sleep {seconds} & echo $! > {bg_file}; wait; sleep {seconds}"
    with make_client(server.url, new_user("timeout")) as api:
        job_id = submit(api, payload=payload, timeout_seconds=1)
        assert wait_for(lambda: read_pids(tmp_path / "bg.pid"), 10), "the job never started"
        runs = wait_runs(api, job_id, _terminal, 20, "a terminal run")
        assert runs[0]["status"] == "TIMED_OUT", runs
        pids = read_pids(tmp_path / "bg.pid")
        assert wait_for(lambda: _all_dead(pids, seconds), 5), pids_with_token(seconds)


def test_job_within_its_timeout_completes(server: ServerHandle) -> None:
    with make_client(server.url, new_user("timeout")) as api:
        job_id = submit(api, payload="cmd:sleep 0.2; echo done", timeout_seconds=5)
        runs = wait_runs(api, job_id, _terminal, 10, "a terminal run")
        assert runs[0]["status"] == "COMPLETED", runs
        assert runs[0]["output"].strip() == "done"
