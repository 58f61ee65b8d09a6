"""``--shell-user`` (issue 7.2): a root server runs ``cmd:`` jobs as ``nobody`` by default,
each in a fresh working directory of its own, so a job cannot read the server's
environment, its database files or its blob folder; ``--shell-user root`` keeps root by
choice; a user that does not exist stops the start with one line naming the setting.

The suite's other servers run jobs as root (``tests.support.processes.clean_env``); here
``CHRONOQ_SHELL_USER`` is set back to the default (empty).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.processes import chronoq_argv, clean_env, free_port, pid_alive
from tests.support.waiting import wait_for

from .helpers import RUN_TERMINAL, make_client, new_user, submit, wait_runs

if TYPE_CHECKING:
    from .conftest import ServerFactory, ServerHandle

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

DEFAULT = {"CHRONOQ_SHELL_USER": "", "CHRONOQ_SECRET_TOKEN": "tok-5b1e"}
NOBODY = pwd.getpwnam("nobody")


def _run(server: ServerHandle, payload: str, timeout: float = 1800) -> dict[str, Any]:
    with make_client(server.url, new_user("shell-user")) as api:
        job_id = submit(api, payload=payload, timeout_seconds=timeout)
        (run,) = wait_runs(
            api, job_id, lambda rs: bool(rs) and rs[0]["status"] in RUN_TERMINAL, 30,
            "a finished run",
        )  # fmt: skip
    return run


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerHandle:
    return server_factory(env=DEFAULT, name="nobody-jobs")


def test_jobs_of_a_root_server_run_as_nobody_in_a_fresh_home(server: ServerHandle) -> None:
    run = _run(server, 'cmd:id -un; pwd; echo "$HOME"; touch mine && stat -c %U .')
    assert run["status"] == "COMPLETED", run
    name, cwd, home, owner = run["output"].split()
    assert (name, owner) == (NOBODY.pw_name, NOBODY.pw_name)
    assert cwd == home and Path(cwd).name.startswith("chronoq-run-")
    assert not Path(cwd).exists()  # removed after the run


@pytest.mark.parametrize(
    "payload",
    [
        "cmd:tr '\\0' '\\n' </proc/$PPID/environ",
        "cmd:cat {data}/chronoq.db",
        "cmd:ls {data}/blobs",
        "cmd:cat {data}/chronoq.db-wal",
    ],
)
def test_a_job_cannot_read_the_server_s_secrets_or_data(server: ServerHandle, payload: str) -> None:
    run = _run(server, payload.format(data=server.data_dir.resolve()))
    assert run["status"] == "FAILED", run
    assert "Permission denied" in run["output"], run
    assert DEFAULT["CHRONOQ_SECRET_TOKEN"] not in run["output"]


def test_shell_user_root_is_an_explicit_choice(server_factory: ServerFactory) -> None:
    server = server_factory(env={"CHRONOQ_SHELL_USER": "root"}, name="root-jobs")
    assert _run(server, "cmd:id -un")["output"].strip() == "root"


def test_an_unknown_shell_user_stops_the_start_with_one_line(tmp_path: Path) -> None:
    command = chronoq_argv(
        "up", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"),
        "--shell-user", "no-such-user-5b1e",
    )  # fmt: skip
    done = subprocess.run(
        command, env=clean_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "shell_user" in line]
    assert len(lines) == 1 and "no-such-user-5b1e" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder ``nobody`` can write (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="chronoq-shared-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_an_escapee_of_a_nobody_job_dies_at_the_timeout(
    server: ServerHandle, shared_dir: Path
) -> None:
    pid_file = shared_dir / "escapee.pid"
    script = f"cmd:setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' & sleep 300"
    run = _run(server, script, timeout=2)
    assert run["status"] == "TIMED_OUT", run
    pid = int(pid_file.read_text())
    wait_for(lambda: not pid_alive(pid), 10, interval=0.05)
    assert not pid_alive(pid), f"the setsid escapee {pid} survived the timeout"
