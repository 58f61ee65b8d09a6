"""The Python client and the client commands against a real ``chronoq up`` subprocess.

``server`` is the module-scoped ``chronoq up`` of ``conftest.py``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from click.testing import CliRunner, Result

from chronoq import Client
from chronoq.cli.client_commands import DEFAULT_USER
from chronoq.cli.main import main
from chronoq.errors import NotFoundError, ValidationError
from tests.support.processes import free_port
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    from .conftest import ServerHandle

T = TypeVar("T")

RUN_DEADLINE = 30.0


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def _poll(fetch: Callable[[], T], done: Callable[[T], bool], what: str) -> T:
    """Call ``fetch`` until ``done`` holds, or fail after RUN_DEADLINE seconds."""
    last: list[T] = []

    def check() -> bool:
        last[:] = [fetch()]
        return done(last[0])

    if not wait_for(check, RUN_DEADLINE, interval=0.1):
        pytest.fail(f"{what}: not reached within {RUN_DEADLINE}s; last value {last[0]!r}")
    return last[0]


def _cli(server: ServerHandle, user: str, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--url", server.url, "--user", user])


def _cli_json(server: ServerHandle, user: str, *args: str) -> Any:
    result = _cli(server, user, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _completed_echo(runs: list[dict[str, Any]]) -> bool:
    return any(run["status"] == "COMPLETED" for run in runs)


# -- the Python client ---------------------------------------------------------


def test_client_health(server: ServerHandle) -> None:
    with Client(server.url) as client:
        assert client.health() == {"status": "ok"}


def test_client_submit_show_list_and_run(server: ServerHandle) -> None:
    user, payload = _user(), f"hello-{uuid.uuid4().hex[:6]}"
    with Client(server.url, user_id=user) as client:
        job = client.submit("proj-a", payload, max_retries=1, timeout_seconds=5)
        assert job["project_id"] == "proj-a"
        assert job["payload"] == payload
        assert job["max_retries"] == 1
        assert job["timeout_seconds"] == 5
        assert client.job(job["job_id"])["job_id"] == job["job_id"]
        assert [j["job_id"] for j in client.jobs(project_id="proj-a")] == [job["job_id"]]
        assert client.jobs(project_id="another") == []

        runs = _poll(lambda: client.runs(job["job_id"]), _completed_echo, "echo run")
        done = next(run for run in runs if run["status"] == "COMPLETED")
        assert done["output"] == f"Success: {payload}"
        assert done["job_id"] == job["job_id"]


def test_client_future_job_cancel(server: ServerHandle) -> None:
    with Client(server.url, user_id=_user()) as client:
        later = datetime.now(UTC) + timedelta(hours=1)
        job = client.submit("proj-b", "later", next_fire_at=later)
        assert job["status"] == "PENDING"
        assert abs(datetime.fromisoformat(job["next_fire_at"]) - later) < timedelta(seconds=1)
        assert client.cancel(job["job_id"])["status"] == "CANCELLED"
        assert client.job(job["job_id"])["status"] == "CANCELLED"
        assert client.runs(job["job_id"]) == []


def test_client_errors_carry_field_and_message(server: ServerHandle) -> None:
    with Client(server.url, user_id=_user()) as client:
        with pytest.raises(ValidationError) as bad_cron:
            client.submit("proj-c", "x", cron_schedule="61 * * * *")
        assert bad_cron.value.field == "cron_schedule"
        assert "61 * * * *" in str(bad_cron.value)
        with pytest.raises(NotFoundError):
            client.job(str(uuid.uuid4()))
        with pytest.raises(ValidationError):
            client.job("not-a-uuid")


def test_other_user_cannot_see_or_cancel_the_job(server: ServerHandle) -> None:
    with Client(server.url, user_id=_user()) as alice, Client(server.url, user_id=_user()) as bob:
        later = datetime.now(UTC) + timedelta(hours=1)
        job = alice.submit("shared-name", "mine", next_fire_at=later)
        with pytest.raises(NotFoundError):
            bob.job(job["job_id"])
        with pytest.raises(NotFoundError):
            bob.runs(job["job_id"])
        with pytest.raises(NotFoundError):
            bob.cancel(job["job_id"])
        assert bob.jobs(project_id="shared-name") == []
        assert alice.job(job["job_id"])["status"] == "PENDING"


def test_client_batch_is_all_or_nothing_and_pages(server: ServerHandle) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with Client(server.url, user_id=_user()) as client:
        with pytest.raises(ValidationError) as bad:
            client.submit_batch(
                [
                    {"project_id": "batch", "payload": "a", "next_fire_at": later},
                    {"project_id": "batch", "payload": "b", "cron_schedule": "nope"},
                ]
            )
        assert bad.value.field == "jobs[1].cron_schedule"
        assert client.jobs(project_id="batch") == []

        specs = [
            {"project_id": "batch", "payload": f"p{i}", "next_fire_at": later} for i in range(5)
        ]
        created = client.submit_batch(specs)
        assert [job["payload"] for job in created] == [f"p{i}" for i in range(5)]

        every = list(client.iter_jobs(project_id="batch", page_size=2))
        assert sorted(job["job_id"] for job in every) == sorted(job["job_id"] for job in created)
        assert client.jobs(project_id="batch", limit=3) == every[:3]
        page, cursor = client.jobs_page(project_id="batch", limit=2)
        assert page == every[:2]
        assert cursor is not None


# -- the CLI ---------------------------------------------------------------------


def test_cli_submit_jobs_job_runs(server: ServerHandle) -> None:
    user, payload = _user(), f"cli-{uuid.uuid4().hex[:6]}"
    job = _cli_json(server, user, "submit", payload, "--project", "cli-proj", "--retries", "2")
    assert job["payload"] == payload
    assert job["max_retries"] == 2
    job_id = job["job_id"]

    listed = _cli_json(server, user, "jobs", "--project", "cli-proj")
    assert [item["job_id"] for item in listed] == [job_id]
    assert _cli_json(server, user, "job", job_id)["job_id"] == job_id

    runs = _poll(lambda: _cli_json(server, user, "runs", job_id), _completed_echo, "CLI run")
    assert next(r for r in runs if r["status"] == "COMPLETED")["output"] == f"Success: {payload}"

    table = _cli(server, user, "runs", job_id)
    assert table.exit_code == 0, table.output
    assert "COMPLETED" in table.stdout
    assert f"Success: {payload}" in table.stdout

    table = _cli(server, user, "jobs", "--project", "cli-proj")
    assert table.exit_code == 0, table.output
    assert job_id in table.stdout
    assert payload in table.stdout

    table = _cli(server, user, "job", job_id)
    assert table.exit_code == 0, table.output
    assert job_id in table.stdout
    assert "cli-proj" in table.stdout


def test_cli_submit_at_then_cancel(server: ServerHandle) -> None:
    user = _user()
    at = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    submitted = _cli(server, user, "submit", "later", "-p", "cli-cancel", "--at", at)
    assert submitted.exit_code == 0, submitted.output
    assert "Submitted" in submitted.stdout
    (job,) = _cli_json(server, user, "jobs", "--project", "cli-cancel", "--status", "pending")
    assert job["next_fire_at"].startswith(at[:19])

    cancelled = _cli(server, user, "cancel", job["job_id"])
    assert cancelled.exit_code == 0, cancelled.output
    assert "CANCELLED" in cancelled.stdout
    assert _cli_json(server, user, "job", job["job_id"])["status"] == "CANCELLED"


def test_cli_reads_url_and_user_from_the_environment(server: ServerHandle) -> None:
    user = _user()
    with Client(server.url, user_id=user) as client:
        job = client.submit("env-proj", "x", next_fire_at=datetime.now(UTC) + timedelta(hours=1))
    env = {"CHRONOQ_URL": server.url, "CHRONOQ_USER": user}
    result = CliRunner().invoke(main, ["job", job["job_id"], "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["job_id"] == job["job_id"]


def test_cli_unknown_job_is_one_line_exit_1(server: ServerHandle) -> None:
    result = _cli(server, _user(), "job", str(uuid.uuid4()))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_cli_other_users_job_is_not_found(server: ServerHandle) -> None:
    with Client(server.url, user_id=_user()) as alice:
        job = alice.submit("p", "x", next_fire_at=datetime.now(UTC) + timedelta(hours=1))
    result = _cli(server, _user(), "cancel", job["job_id"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    with Client(server.url, user_id=alice.user_id) as again:
        assert again.job(job["job_id"])["status"] == "PENDING"


def test_cli_bad_cron_names_the_field(server: ServerHandle) -> None:
    result = _cli(server, _user(), "submit", "x", "--project", "p", "--cron", "61 * * * *")
    assert result.exit_code == 1
    assert "cron_schedule" in result.stderr
    assert "61 * * * *" in result.stderr
    assert "Traceback" not in result.output


def test_cli_usage_errors_exit_2() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["submit", "x"]).exit_code == 2  # no --project
    assert runner.invoke(main, ["submit", "x", "-p", "p", "--retries", "-1"]).exit_code == 2
    assert runner.invoke(main, ["jobs", "--limit", "0"]).exit_code == 2
    assert runner.invoke(main, ["job"]).exit_code == 2
    assert runner.invoke(main, ["jobs", "--url", "http://127.0.0.1:port"]).exit_code == 2


def test_cli_unreachable_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(main, ["jobs", "--url", url, "--user", "u"])
    assert result.exit_code == 1
    assert f"server at {url} is not reachable" in result.stderr
    assert "Traceback" not in result.output


# -- the new user's path (issue 7) ---------------------------------------------


def test_cli_cancel_twice_says_already_cancelled(server: ServerHandle) -> None:
    user = _user()
    with Client(server.url, user_id=user) as client:
        job = client.submit("p", "later", next_fire_at=datetime.now(UTC) + timedelta(hours=1))
    first = _cli(server, user, "cancel", job["job_id"])
    assert first.exit_code == 0, first.output
    again = _cli(server, user, "cancel", job["job_id"])
    assert again.exit_code == 1, again.output
    assert "Cancelled job" not in again.stdout
    assert f"job {job['job_id']} was already cancelled" in again.stderr


def test_cli_cancel_of_a_finished_job_says_so(server: ServerHandle) -> None:
    user = _user()
    with Client(server.url, user_id=user) as client:
        job = client.submit("p", "done soon")
        _poll(lambda: client.job(job["job_id"]), lambda j: j["status"] == "COMPLETED", "done")
    result = _cli(server, user, "cancel", job["job_id"])
    assert result.exit_code == 1, result.output
    assert "already finished (COMPLETED)" in result.stderr
    with Client(server.url, user_id=user) as client:
        assert client.job(job["job_id"])["status"] == "COMPLETED"


README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_users_and_the_cli_default_user_agree(server: ServerHandle) -> None:
    text = README.read_text()
    curl_users = set(re.findall(r"X-User-ID: ([\w-]+)", text))
    python_users = set(re.findall(r'user_id="([\w-]+)"', text))
    assert curl_users == python_users == {DEFAULT_USER}
    assert f"acts as user `{DEFAULT_USER}`" in text  # the README says who the CLI is

    project = f"readme-{uuid.uuid4().hex[:6]}"
    with Client(server.url, user_id=DEFAULT_USER) as client:  # as the README's curl lines
        job = client.submit(project, "x", next_fire_at=datetime.now(UTC) + timedelta(hours=1))
    env = {"CHRONOQ_USER": None, "CHRONOQ_URL": server.url}
    listed = CliRunner().invoke(main, ["jobs", "-p", project, "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [j["job_id"] for j in json.loads(listed.stdout)] == [job["job_id"]]
