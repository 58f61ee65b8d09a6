"""`cmd:` jobs: output capture (stdout and stderr), exit codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .helpers import RUN_TERMINAL, make_client, new_user, submit, wait_job_status, wait_runs

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import ServerHandle


def _terminal(runs: list[dict]) -> bool:  # type: ignore[type-arg]
    return bool(runs) and all(r["status"] in RUN_TERMINAL for r in runs)


def test_stdout_and_stderr_are_captured(server: ServerHandle) -> None:
    with make_client(server.url, new_user("sh")) as api:
        job_id = submit(api, payload="cmd:echo hello; echo err 1>&2")
        runs = wait_runs(api, job_id, _terminal, 10, "a terminal run")
        assert len(runs) == 1, runs
        run = runs[0]
        assert run["status"] == "COMPLETED", run
        assert run["exit_code"] == 0, run
        output = run["output"]
        assert "hello" in output and "err" in output, run
        assert output.index("hello") < output.index("err"), run
        assert output.replace("\r", "").split() == ["hello", "err"], run
        wait_job_status(api, job_id, {"COMPLETED"}, 5)


def test_non_zero_exit_fails_the_job(server: ServerHandle) -> None:
    with make_client(server.url, new_user("sh")) as api:
        job_id = submit(api, payload="cmd:exit 3")
        runs = wait_runs(api, job_id, _terminal, 10, "a terminal run")
        assert len(runs) == 1, runs
        assert runs[0]["status"] == "FAILED", runs
        assert runs[0]["exit_code"] == 3, runs
        assert runs[0]["attempt"] == 1
        job = wait_job_status(api, job_id, {"FAILED"}, 5)
        assert api.get("/job", params={"id": job_id}).json()["status"] == job["status"]


def test_shell_runs_with_stdin_closed_and_sees_its_files(
    server: ServerHandle, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.txt"
    with make_client(server.url, new_user("sh")) as api:
        # `cat` without arguments must see EOF at once (stdin is /dev/null), not hang.
        job_id = submit(
            api,
            payload=f"cmd:cat; printf 'written' > '{marker}'; cat '{marker}'",
            timeout_seconds=10,
        )
        runs = wait_runs(api, job_id, _terminal, 12, "a terminal run")
        assert runs[0]["status"] == "COMPLETED", runs
        assert runs[0]["output"].strip() == "written"
        assert marker.read_text() == "written"


def test_sleep_payload_sleeps(server: ServerHandle) -> None:
    from tests.support.times import parse_ts

    with make_client(server.url, new_user("sleep")) as api:
        job_id = submit(api, payload="sleep:300ms")
        runs = wait_runs(api, job_id, _terminal, 10, "a terminal run")
        run = runs[0]
        assert run["status"] == "COMPLETED", run
        took = parse_ts(run["completed_at"]) - parse_ts(run["started_at"])
        assert took.total_seconds() >= 0.29, run
