"""With `--no-shell`, `cmd:` submissions are refused (403) and nothing is stored."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.support.metrics import metric_sum, scrape

from .helpers import assert_error, completed, list_jobs, make_client, new_user, submit, wait_runs

if TYPE_CHECKING:
    from .conftest import ServerFactory, ServerHandle


@pytest.fixture(scope="module")
def no_shell(module_server_factory: ServerFactory) -> ServerHandle:
    return module_server_factory("--no-shell", name="noshell")


CMD = {"project_id": "p", "payload": "cmd:touch /tmp/chronoq-should-not-exist"}


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/submit", CMD),
        ("/v1/jobs", CMD),
        ("/submit", {**CMD, "cron_schedule": "@every 1s"}),
        ("/v1/jobs:batch", {"jobs": [{"project_id": "p", "payload": "fine"}, CMD]}),
    ],
    ids=["submit", "v1", "recurring", "batch"],
)
def test_cmd_is_refused_without_shell(no_shell: ServerHandle, route: str, body: Any) -> None:
    created = metric_sum(scrape(no_shell.url), "jobs_created_total")
    with make_client(no_shell.url, new_user("noshell")) as api:
        r = api.post(route, json=body)
        assert_error(r, 403, "shell_disabled")
        assert list_jobs(api) == []
        assert api.get("/jobs").json() == []
    assert metric_sum(scrape(no_shell.url), "jobs_created_total") == created


def test_cmd_env_variable_also_disables_shell(server_factory: ServerFactory) -> None:
    server = server_factory(env={"CHRONOQ_SHELL": "false"})
    with make_client(server.url, new_user("noshell")) as api:
        assert_error(api.post("/v1/jobs", json=CMD), 403, "shell_disabled")
        assert list_jobs(api) == []


def test_other_payloads_still_run_without_shell(no_shell: ServerHandle) -> None:
    with make_client(no_shell.url, new_user("noshell")) as api:
        job_id = submit(api, payload="plain echo")
        runs = wait_runs(api, job_id, lambda rs: bool(completed(rs)), 10, "COMPLETED")
        assert runs[0]["output"] == "Success: plain echo"
