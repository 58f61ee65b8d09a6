"""Issue 7, for operators: what a job, a co-tenant on the host and a new user meet.

* the data dir is ``0700`` and every file Chronoq writes in it ``0600``, whatever
  the umask it was started with;
* a ``cmd:`` job sees an allowlisted environment: none of the server's secrets;
* the server is not dumpable, so a job running as the server's own (unprivileged)
  user cannot read ``/proc/<server>/environ`` (run as ``nobody`` through
  ``setpriv``; skipped when not root).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.processes import HOST, chronoq_argv, clean_env

from .conftest import ServerHandle
from .helpers import RUN_TERMINAL, completed, make_client, new_user, submit, wait_runs

if TYPE_CHECKING:
    from .conftest import ServerFactory


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_and_files_are_private_whatever_the_umask(server_factory: ServerFactory) -> None:
    old = os.umask(0)  # the server inherits it: without care, files would be 0666
    try:
        server = server_factory(name="umask0")
    finally:
        os.umask(old)
    with make_client(server.url, new_user("modes")) as api:
        job_id = submit(api, payload="offloaded " + "x" * 4096)  # > 1 KiB: a blob file
        wait_runs(api, job_id, lambda runs: bool(completed(runs)), 20, "COMPLETED")

    data = server.data_dir
    entries = sorted(data.rglob("*"))
    names = {p.name for p in entries}
    assert {"chronoq.db", "chronoq.db-wal", "chronoq.db-shm", "blobs"} <= names, names
    blobs = [p for p in (data / "blobs").rglob("*") if p.is_file()]
    assert blobs, "the payload was not offloaded"
    assert _mode(data) == 0o700
    loose = {
        str(p.relative_to(data)): oct(_mode(p))
        for p in entries
        if _mode(p) != (0o700 if p.is_dir() else 0o600)
    }
    assert loose == {}


# -- jobs cannot reach the server's secrets ---------------------------------------------------

SECRETS = {
    "DB_PASS": "db-pass-7f3a",
    "OPENAI_KEY": "sk-openai-7f3a",
    "SENTRY_DSN": "https://sentry-7f3a@example.invalid/1",
    "GH_PAT": "ghp_7f3a",
    "SSH_AUTH_SOCK": "/tmp/ssh-7f3a/agent.1",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-7f3a",
}


def _run_output(url: str, payload: str) -> dict[str, Any]:
    with make_client(url, new_user("env")) as api:
        job_id = submit(api, payload=payload)
        runs = wait_runs(api, job_id, lambda rs: bool(rs) and rs[0]["status"] in RUN_TERMINAL,
                         20, "a finished run")  # fmt: skip
    return runs[0]


def test_job_environment_is_an_allowlist(server_factory: ServerFactory) -> None:
    probe = server_factory(start=False, name="probe")
    store = f"sqlite:///{probe.data_dir / 'chronoq.db'}"
    server = server_factory(env={**SECRETS, "CHRONOQ_STORE": store}, name="secrets")
    run = _run_output(server.url, "cmd:env")
    assert run["status"] == "COMPLETED", run
    names = {line.split("=", 1)[0] for line in run["output"].splitlines() if "=" in line}
    assert "PATH" in names and "CHRONOQ_JOB_ID" in names and "CHRONOQ_RUN_ID" in names
    leaked = [name for name in [*SECRETS, "CHRONOQ_STORE"] if name in names]
    leaked += [value for value in [*SECRETS.values(), store] if value in run["output"]]
    assert leaked == []


def _nobody() -> tuple[int, int] | None:
    """uid and gid of ``nobody`` when this test may switch to it (root, Linux, setpriv)."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux") or not shutil.which("setpriv"):
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


class _ServerAs(ServerHandle):
    """A ``chronoq up`` running as another (unprivileged) user through ``setpriv``."""

    def __init__(self, base_dir: Path, uid: int, gid: int, env: dict[str, str]) -> None:
        super().__init__(base_dir, env=env, name="unprivileged")
        self.uid, self.gid = uid, gid
        for path in (base_dir, self.data_dir):
            os.chown(path, uid, gid)

    def command(self) -> list[str]:
        who = [f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        return ["setpriv", *who, "--", *super().command()]


@pytest.fixture
def unprivileged_base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="chronoq-nobody-"))  # /tmp: traversable by nobody
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_job_as_the_server_user_cannot_read_its_environ(unprivileged_base: Path) -> None:
    ids = _nobody()
    if ids is None:
        pytest.skip("needs root, Linux, setpriv and a nobody user to switch to")
    here = Path(__file__).resolve()
    if any(not (d.stat().st_mode & 0o001) for d in here.parents):
        pytest.skip(f"nobody cannot reach the checkout ({here.parent} has a private parent)")
    server = _ServerAs(unprivileged_base / "srv", *ids, env={**SECRETS, "CHRONOQ_SHELL_USER": ""})
    try:
        server.start()
        run = _run_output(server.url, "cmd:tr '\\0' '\\n' </proc/$PPID/environ")
        other = _run_output(server.url, "cmd:id -u")
    finally:
        server.dispose()
    assert other["output"].strip() == str(ids[0])  # the job ran as the server's own user
    assert run["status"] == "FAILED", run
    assert "Permission denied" in run["output"], run
    assert not [value for value in SECRETS.values() if value in run["output"]]


# -- the new user's path ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_install_prints_no_setuptools_warning() -> None:
    """``pip install -e .`` (as ``scripts/up`` runs it) builds without a deprecation warning:
    ``project.license`` is the SPDX string, not the deprecated table."""
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet", "-e"]
    done = subprocess.run([*pip, str(ROOT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    warnings = [
        line for line in (done.stdout + done.stderr).splitlines()
        if "Warning" in line or "deprecated" in line
    ]  # fmt: skip
    assert warnings == []


def test_cluster_folder_is_ignored_by_git() -> None:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", ".chronoq-cluster/logs/api-1.log"],
        timeout=30,
    )
    assert done.returncode == 0, ".chronoq-cluster/ is not in .gitignore"


def test_busy_port_is_reported_before_anything_claims_to_listen(tmp_path: Path) -> None:
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        argv = chronoq_argv("up", "--host", HOST, "--port", str(port),
                            "--data-dir", str(tmp_path / "data"))  # fmt: skip
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=clean_env(), cwd=tmp_path
        )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"cannot listen on {HOST}:{port}" in output, output
    assert "http://" not in output, output  # nothing claimed to be listening
    assert "Traceback" not in output, output


def _cluster_up(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    argv = chronoq_argv("cluster", "up", "--folder", str(tmp_path / "cluster"), *args)
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=clean_env(env), cwd=tmp_path
    )
    return done.returncode, done.stdout + done.stderr


def _without_asyncpg(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import asyncpg`` fails, as on a fresh ``scripts/up`` venv."""
    hidden = tmp_path / "no-asyncpg"
    hidden.mkdir(exist_ok=True)
    (hidden / "asyncpg.py").write_text("raise ImportError('asyncpg hidden by the test')\n")
    return {"PYTHONPATH": str(hidden)}


def test_cluster_up_without_asyncpg_says_what_to_install(tmp_path: Path) -> None:
    env = _without_asyncpg(tmp_path)
    code, output = _cluster_up(tmp_path, "--store", "postgresql://127.0.0.1:1/none", env=env)
    assert code == 1, output
    assert output.strip().count("\n") == 0, output  # one line
    assert "pip install 'chronoq[postgres]'" in output, output
    assert "supervising" not in output


def test_cluster_supervisor_gives_up_on_a_role_that_exits_at_once(tmp_path: Path) -> None:
    code, output = _cluster_up(
        tmp_path, "--store", "postgresql://127.0.0.1:1/none", "--api", "0", "--pickers", "0",
        "--coordinators", "0", "--workers", "1", "--arg=--no-such-flag",
    )  # fmt: skip
    assert code == 1, output
    assert "worker-1 exited 3 times" in output, output
    assert "not restarting it" in output
    assert "No such option '--no-such-flag'" in output  # the role's own error, from its log
    assert "cluster stopped" in output


def _curl_commands(text: str) -> list[str]:
    """Every ``curl ...`` command of a page, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]


def test_every_documented_curl_with_a_body_sends_json() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    with_body = [
        (page.name, command)
        for page in pages
        for command in _curl_commands(page.read_text())
        if re.search(r"\s(-d|--data\S*)\s", command)
    ]
    assert len(with_body) >= 3, with_body  # the README's two and docs/api.md's
    missing = [item for item in with_body if "-H 'Content-Type: application/json'" not in item[1]]
    assert missing == []


def test_a_role_without_asyncpg_says_what_to_install_once(tmp_path: Path) -> None:
    argv = chronoq_argv("worker", "--store", "postgresql://127.0.0.1:1/none")
    env = clean_env(_without_asyncpg(tmp_path))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert output.strip().count("\n") == 0, output
    assert output.count("pip install 'chronoq[postgres]'") == 1, output
