"""Tenant isolation generated from the OpenAPI document (issue 9.11), in both auth modes:
every operation that takes a job id (a ``job_id`` path parameter or the seed's ``id``
query parameter) or a run id (``run_id``) is called by Bob with Alice's ids, with each of
its optional flags (``purge``, ``catch_up``) on and off, and must answer 404 exactly like a
missing id — and leave Alice's job as it was. A new endpoint is covered the day it is documented."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from chronoq.domain.clock import format_rfc3339
from tests.support.times import utcnow

from .auth_support import bearer, make_token
from .helpers import completed, get_job, make_client, new_user, submit, wait_runs

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerFactory

Connect = Callable[[str], "httpx.Client"]
BODIES: dict[str, dict[str, Any]] = {"patch": {"max_retries": 1}}
"""A valid body for operations that need one (validation must not answer first)."""
FLAGS = ("purge", "catch_up")


@pytest.fixture(scope="module", params=["header", "token"])
def connect(request: pytest.FixtureRequest, module_server_factory: ServerFactory) -> Connect:
    if request.param == "header":
        server = module_server_factory(name="header")
        return lambda user: make_client(server.url, user)
    server = module_server_factory("--auth", "token", name="token")

    def as_user(user: str) -> httpx.Client:
        return bearer(server.url, make_token(server, user), user_header="alice")

    return as_user


@pytest.fixture(scope="module")
def alice(connect: Connect) -> Iterator[dict[str, Any]]:
    """Alice's finished one-shot job with its run, and her recurring job."""
    with connect(new_user("alice")) as client:
        done = submit(client, project_id="secret-project", payload="alice-private-data")
        runs = wait_runs(client, done, lambda rs: bool(completed(rs)), 15, "COMPLETED")
        start = format_rfc3339(utcnow() + timedelta(days=1))
        recurring = submit(
            client, project_id="secret-project", payload="x", cron_schedule="0 3 * * *",
            start_at=start,
        )  # fmt: skip
        yield {"client": client, "done": done, "run": runs[0]["run_id"], "recurring": recurring}


@pytest.fixture(scope="module")
def bob(connect: Connect) -> Iterator[httpx.Client]:
    with connect(new_user("bob")) as client:
        yield client


def _operations(client: httpx.Client) -> list[tuple[str, str, dict[str, Any]]]:
    document = client.get("/openapi.json").json()
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            names = {(p["name"], p["in"]) for p in operation.get("parameters", [])}
            if names & {("job_id", "path"), ("id", "query"), ("run_id", "path")}:
                found.append((method, path, operation))
    return found


def _calls(operation: dict[str, Any]) -> list[dict[str, str]]:
    """The query strings to try: none, then each optional flag the operation has, set."""
    flags = [p["name"] for p in operation.get("parameters", []) if p["name"] in FLAGS]
    return [{}, *({flag: "true"} for flag in flags)]


def test_every_documented_job_operation_answers_404_for_foreign_ids(
    alice: dict[str, Any], bob: httpx.Client
) -> None:
    operations = _operations(bob)
    covered = {(m, p) for m, p, _o in operations}
    assert {("post", "/v1/jobs/{job_id}:pause"), ("post", "/v1/jobs/{job_id}:resume"),
            ("post", "/v1/jobs/{job_id}:trigger"), ("patch", "/v1/jobs/{job_id}"),
            ("delete", "/v1/jobs/{job_id}"), ("get", "/v1/jobs/{job_id}/fires"),
            ("get", "/job")} <= covered  # fmt: skip
    before = {k: get_job(alice["client"], alice[k]) for k in ("done", "recurring")}
    checked = 0
    for method, path, operation in operations:
        for which in ("done", "recurring"):
            for query in _calls(operation):
                _check(bob, method, path, operation, query, alice[which], alice["run"])
                checked += 1
    assert checked >= 2 * len(operations)
    after = {k: get_job(alice["client"], alice[k]) for k in ("done", "recurring")}
    assert after == before  # Bob changed nothing: no pause, patch, trigger or purge landed


def _check(
    bob: httpx.Client,
    method: str,
    path: str,
    operation: dict[str, Any],
    query: dict[str, str],
    job: str,
    run: str,
) -> None:
    missing_job, missing_run = str(uuid.uuid4()), str(uuid.uuid4())

    def call(job_id: str, run_id: str) -> httpx.Response:
        url = path.replace("{job_id}", job_id).replace("{run_id}", run_id)
        params = dict(query)
        if any(p["name"] == "id" and p["in"] == "query" for p in operation["parameters"]):
            params["id"] = job_id
        return bob.request(method.upper(), url, params=params, json=BODIES.get(method))

    foreign, absent = call(job, run), call(missing_job, missing_run)
    what = f"{method.upper()} {path} {query}"
    assert foreign.status_code == 404, (what, foreign.text)
    assert foreign.json()["error"]["code"] == "not_found", what
    normalised = foreign.text.replace(job, "<id>").replace(run, "<run>")
    assert normalised == absent.text.replace(missing_job, "<id>").replace(missing_run, "<run>")
    assert "alice" not in foreign.text and "secret" not in foreign.text, what
