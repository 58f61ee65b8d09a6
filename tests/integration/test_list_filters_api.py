"""``GET /v1/jobs`` filters, the newest runs on each listed job, and ``GET /v1/whoami``,
through a real server: a bad value of each parameter is a 400 naming it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest
from click.testing import CliRunner, Result

from chronoq import Client
from chronoq.cli.main import main
from chronoq.errors import ValidationError
from tests.support.waiting import wait_for

from .auth_support import bearer, make_token
from .helpers import assert_error, create, list_jobs, new_user

if TYPE_CHECKING:
    from .conftest import ServerFactory, ServerHandle


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=BOGUS", "status"),
        ("status=PENDING,NOPE", "status"),
        ("&".join(["status=PENDING"] * 8), "status"),
        ("kind=daily", "kind"),
        ("kind=ONCE%00", "kind"),
        ("queue=a%20b", "queue"),
        ("queue=q%00", "queue"),
        ("queue=" + "q" * 65, "queue"),
        ("queue=%FF", "queue"),
        ("q=a%00b", "q"),
        ("q=" + "x" * 201, "q"),
        ("q=%FF%FE", "q"),
        ("project_id=%C3%28", "project_id"),
        ("project_id=p%00", "project_id"),
        ("limit=0", "limit"),
        ("cursor=nope", "cursor"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(api: httpx.Client, query: str, field: str) -> None:
    assert_error(api.get(f"/v1/jobs?{query}"), 400, "validation_error", field)


def test_filters_search_and_the_last_run(server: ServerHandle) -> None:
    user = new_user("lists")
    with server.client(user) as me, server.client(new_user("other")) as other:
        done = create(me, project_id="alpha", payload="echo hi")
        nightly = create(me, project_id="beta-nightly", payload="x", cron_schedule="0 3 * * *")
        plain = create(
            me, project_id="Gamma", payload="x", cron_schedule="0 4 * * *", queue="reports"
        )
        theirs = create(other, project_id="beta-nightly", payload="x")

        def listed(**params: str) -> list[str]:
            return [j["job_id"] for j in list_jobs(me, limit=1, **params)]

        assert wait_for(lambda: listed(status="COMPLETED") == [done["job_id"]], 30)
        assert listed(kind="recurring") == [nightly["job_id"], plain["job_id"]]
        assert listed(kind="once") == [done["job_id"]]
        assert listed(queue="reports") == [plain["job_id"]]
        assert listed(queue="default", kind="recurring") == [nightly["job_id"]]
        assert listed(q="nightly") == [nightly["job_id"]]
        assert listed(q="gamma") == []  # project ids are compared exactly
        assert listed(q=done["job_id"][:13].upper()) == [done["job_id"]]
        assert listed(q=theirs["job_id"]) == []
        assert listed(status="completed,PAUSED", kind="once") == [done["job_id"]]
        r = me.get("/v1/jobs", params=[("status", "PENDING"), ("status", "COMPLETED")])
        assert [j["job_id"] for j in r.json()["items"]] == [
            done["job_id"], nightly["job_id"], plain["job_id"]
        ]  # fmt: skip
        assert [j["job_id"] for j in list_jobs(other, q="nightly")] == [theirs["job_id"]]

        items = {j["job_id"]: j for j in list_jobs(me)}
        (run,) = me.get(f"/v1/jobs/{done['job_id']}/runs").json()["items"]
        last = items[done["job_id"]]["last_run"]
        assert last == {k: run[k] for k in last}
        assert set(last) == {
            "run_id", "status", "attempt", "scheduled_for", "started_at", "completed_at"
        }  # fmt: skip
        assert last["status"] == "COMPLETED" and last["completed_at"]
        assert items[done["job_id"]]["recent_run_statuses"] == ["COMPLETED"]
        assert items[nightly["job_id"]]["last_run"] is None
        assert items[nightly["job_id"]]["recent_run_statuses"] == []


def test_whoami_says_who_and_whether_shell_jobs_are_allowed(api: httpx.Client) -> None:
    r = api.get("/v1/whoami")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == "alice" and body["auth"] == "header"
    assert isinstance(body["shell_allowed"], bool)
    assert_error(api.get("/v1/whoami", headers={"X-User-ID": ""}), 401, "missing_user_id")


def test_whoami_in_token_mode_names_the_token_user(module_server_factory: ServerFactory) -> None:
    server = module_server_factory("--auth", "token", name="token")
    alice = new_user("alice")
    with bearer(server.url, make_token(server, alice), user_header="mallory") as client:
        r = client.get("/v1/whoami")
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == alice and r.json()["auth"] == "token"
    with bearer(server.url, None, user_header=alice) as header_only:
        assert_error(header_only.get("/v1/whoami"), 401, "missing_token", "Authorization")


def _cli(server: ServerHandle, user: str, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--url", server.url, "--user", user])


def test_client_and_cli_filters(server: ServerHandle) -> None:
    user = new_user("cli")
    with Client(server.url, user_id=user) as client:
        once = client.submit(project_id="cli-alpha", payload="echo hi")
        cron = client.submit(project_id="cli-beta", payload="x", cron_schedule="0 3 * * *")
        assert wait_for(lambda: client.jobs(status=["COMPLETED"]) != [], 30)
        assert [j["job_id"] for j in client.jobs(kind="recurring")] == [cron["job_id"]]
        assert client.jobs(queue="elsewhere") == []
        assert [j["job_id"] for j in client.jobs(queue="default", kind="once")] == [once["job_id"]]
        assert [j["job_id"] for j in client.jobs(search="alpha")] == [once["job_id"]]
        both = client.jobs(status=["COMPLETED", "PENDING"], search="cli-")
        assert [j["job_id"] for j in both] == [once["job_id"], cron["job_id"]]
        assert both[0]["last_run"]["status"] == "COMPLETED"
        assert client.whoami()["user_id"] == user
        with pytest.raises(ValidationError) as refused:
            client.jobs(kind="daily")
        assert refused.value.field == "kind"

    listed = _cli(server, user, "jobs", "--status", "completed,paused", "--kind", "once", "--json")
    assert listed.exit_code == 0, listed.output
    assert [j["job_id"] for j in json.loads(listed.stdout)] == [once["job_id"]]
    table = _cli(server, user, "jobs", "--search", "beta", "--project", "cli-beta")
    assert table.exit_code == 0, table.output
    assert cron["job_id"] in table.stdout and once["job_id"] not in table.stdout
    assert "LAST RUN" in table.stdout
    queued = _cli(server, user, "jobs", "--queue", "default", "--kind", "recurring", "--json")
    assert [j["job_id"] for j in json.loads(queued.stdout)] == [cron["job_id"]], queued.output
    table = _cli(server, user, "jobs", "-s", "COMPLETED")
    assert "COMPLETED" in table.stdout and once["job_id"] in table.stdout
    who = _cli(server, user, "whoami")
    assert who.exit_code == 0 and user in who.stdout, who.output
    bad = _cli(server, user, "jobs", "--status", "BOGUS")
    assert bad.exit_code == 1 and "status" in bad.output
