"""An API off loopback: without ``--auth`` Chronoq refuses to start (one line); with
``--auth header`` explicit it starts; ``cmd:`` then needs a caller allowed to run shell
jobs (a token made with ``--allow-shell``, or a user in ``--shell-users``): any other
caller gets 403 and nothing is stored.

The servers listen on 0.0.0.0 (a wildcard is not a loopback address) and the tests
reach them through 127.0.0.1; nothing outside loopback is ever contacted. They start
only with ``--auth token`` or explicit ``--auth header`` and live for one test each.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.processes import chronoq_argv, clean_env, free_port

from .auth_support import bearer, make_token
from .helpers import (
    assert_error,
    completed,
    get_job,
    make_client,
    new_user,
    submit,
    wait_runs,
)

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerFactory, ServerHandle

EVERYWHERE = "0.0.0.0"
SHELL_JOB = {"project_id": "exposed", "payload": "cmd:echo shell-ran"}


def _ids(client: httpx.Client) -> list[str]:
    r = client.get("/v1/jobs")
    assert r.status_code == 200, r.text
    return [j["job_id"] for j in r.json()["items"]]


def test_header_mode_is_refused_off_loopback_without_auth(tmp_path: Path) -> None:
    port = free_port()
    command = chronoq_argv(
        "up", "--host", EVERYWHERE, "--port", str(port), "--data-dir", f"{tmp_path}/data"
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("chronoq: ") and "--auth token" in lines[0]
    assert EVERYWHERE in lines[0]


def _exposed(server_factory: ServerFactory, *args: str) -> ServerHandle:
    # ServerHandle passes --host 127.0.0.1 first; the later --host wins (click: last value).
    return server_factory("--host", EVERYWHERE, "--shell", *args, name="exposed")


def test_explicit_header_mode_starts_and_gates_shell_by_user(
    server_factory: ServerFactory,
) -> None:
    alice = new_user("alice")
    server = _exposed(server_factory, "--auth", "header", "--shell-users", f"{alice},ops")
    with make_client(server.url, new_user("bob")) as bob, make_client(server.url, alice) as ali:
        assert_error(bob.post("/v1/jobs", json=SHELL_JOB), 403, "shell_disabled")
        assert_error(bob.post("/submit", json=SHELL_JOB), 403, "shell_disabled")
        batch = {"jobs": [{"project_id": "exposed", "payload": "fine"}, SHELL_JOB]}
        assert_error(bob.post("/v1/jobs:batch", json=batch), 403, "shell_disabled")
        assert _ids(bob) == []
        assert bob.post("/v1/jobs", json={"project_id": "p", "payload": "echo"}).status_code == 201
        job_id = submit(ali, **SHELL_JOB)
        runs = wait_runs(ali, job_id, lambda rs: bool(completed(rs)), 30, "COMPLETED")
        assert "shell-ran" in completed(runs)[0]["output"]


def test_token_mode_off_loopback_needs_allow_shell_for_cmd(
    server_factory: ServerFactory,
) -> None:
    server = _exposed(server_factory, "--auth", "token")
    user = new_user("tok")
    plain, shell = make_token(server, user), make_token(server, user, "--allow-shell")
    with bearer(server.url, plain) as no_shell, bearer(server.url, shell) as may_shell:
        assert_error(no_shell.post("/v1/jobs", json=SHELL_JOB), 403, "shell_disabled")
        assert_error(no_shell.post("/submit", json=SHELL_JOB), 403, "shell_disabled")
        assert _ids(no_shell) == []  # nothing stored
        r = may_shell.post("/v1/jobs", json=SHELL_JOB)
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        runs = wait_runs(may_shell, job_id, lambda rs: bool(completed(rs)), 30, "COMPLETED")
        assert "shell-ran" in completed(runs)[0]["output"]
        assert get_job(no_shell, job_id)["job_id"] == job_id  # same user, other token
    with make_client(server.url, user) as header_only:  # X-User-ID is no identity here
        assert_error(header_only.get("/v1/jobs"), 401, "missing_token")
