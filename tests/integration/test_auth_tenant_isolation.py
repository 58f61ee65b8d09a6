"""Tenant isolation in both auth modes: Bob calls every endpoint with Alice's ids and
gets 404 exactly like a missing id, and his lists show nothing of hers. In token mode
Bob also claims to be Alice in ``X-User-ID``: ignored, his token decides.
(tests/integration/test_tenant_isolation.py covers header mode's other cases.)"""

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


@pytest.fixture(scope="module", params=["header", "token"])
def connect(request: pytest.FixtureRequest, module_server_factory: ServerFactory) -> Connect:
    """``connect(user)``: a client acting as ``user`` on a server in this auth mode."""
    if request.param == "header":
        server = module_server_factory(name="header")
        return lambda user: make_client(server.url, user)
    server = module_server_factory("--auth", "token", name="token")

    def as_user(user: str) -> httpx.Client:
        # Claims to be "alice" in X-User-ID whoever it is: token mode must ignore it.
        return bearer(server.url, make_token(server, user), user_header="alice")

    return as_user


@pytest.fixture(scope="module")
def alice(connect: Connect) -> Iterator[dict[str, Any]]:
    """Alice's finished job with its run, and her job scheduled an hour ahead."""
    with connect(new_user("alice")) as client:
        done = submit(client, project_id="secret-project", payload="alice-private-data")
        runs = wait_runs(client, done, lambda rs: bool(completed(rs)), 15, "COMPLETED")
        later = format_rfc3339(utcnow() + timedelta(hours=1))
        future = submit(client, project_id="secret-project", payload="x", next_fire_at=later)
        yield {"client": client, "done": done, "run": runs[0]["run_id"], "future": future}


@pytest.fixture(scope="module")
def bob(connect: Connect) -> Iterator[httpx.Client]:
    with connect(new_user("bob")) as client:
        yield client


ROUTES = [
    ("GET", "/job?id={job}"),
    ("GET", "/v1/jobs/{job}"),
    ("GET", "/v1/jobs/{job}/runs"),
    ("GET", "/v1/jobs/{job}/runs/{run}/output"),
    ("DELETE", "/v1/jobs/{job}"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
@pytest.mark.parametrize("which", ["done", "future"])
def test_every_endpoint_answers_404_for_foreign_ids(
    alice: dict[str, Any], bob: httpx.Client, method: str, route: str, which: str
) -> None:
    job, run = alice[which], alice["run"]
    missing_job, missing_run = str(uuid.uuid4()), str(uuid.uuid4())
    foreign = bob.request(method, route.format(job=job, run=run))
    absent = bob.request(method, route.format(job=missing_job, run=missing_run))
    assert foreign.status_code == 404, foreign.text
    assert foreign.json()["error"]["code"] == "not_found"
    normalised = foreign.text.replace(job, "<id>").replace(run, "<run>")
    assert normalised == absent.text.replace(missing_job, "<id>").replace(missing_run, "<run>")
    assert "alice" not in foreign.text and "secret" not in foreign.text


def test_bob_sees_and_changes_nothing_of_alices(alice: dict[str, Any], bob: httpx.Client) -> None:
    before = get_job(alice["client"], alice["future"])
    assert bob.delete(f"/v1/jobs/{alice['future']}").status_code == 404
    assert get_job(alice["client"], alice["future"]) == before
    assert bob.get("/jobs").json() == []
    for params in ({}, {"project_id": "secret-project"}, {"status": "COMPLETED"}):
        r = bob.get("/v1/jobs", params=params)
        assert r.status_code == 200 and r.json()["items"] == [], (params, r.text)
    mine = submit(bob, project_id="secret-project", payload="bob-data")
    theirs = {j["job_id"] for j in alice["client"].get("/v1/jobs").json()["items"]}
    assert theirs == {alice["done"], alice["future"]} and mine not in theirs
