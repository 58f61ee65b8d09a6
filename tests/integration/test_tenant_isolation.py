"""A user sees and changes only their own jobs: another user's id answers 404
exactly like a missing id, and lists show nothing of anyone else's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from chronoq.domain.clock import format_rfc3339
from tests.support.times import utcnow

from .helpers import completed, get_job, get_runs, make_client, new_user, submit, wait_runs

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerHandle


@pytest.fixture(scope="module")
def alice_jobs(server: ServerHandle) -> Iterator[dict[str, Any]]:
    """Alice's finished job (with a run) and her job scheduled an hour ahead."""
    user = new_user("alice")
    with make_client(server.url, user) as alice:
        done = submit(alice, project_id="secret-project", payload="alice-private-data")
        wait_runs(alice, done, lambda rs: bool(completed(rs)), 10, "COMPLETED")
        future = submit(
            alice,
            project_id="secret-project",
            payload="alice-later",
            next_fire_at=format_rfc3339(utcnow() + timedelta(hours=1)),
        )
        yield {"client": alice, "done": done, "future": future}


@pytest.fixture
def bob(server: ServerHandle) -> Iterator[httpx.Client]:
    with make_client(server.url, new_user("bob")) as client:
        yield client


def _normalised(r: httpx.Response, job_id: str) -> tuple[int, str]:
    return r.status_code, r.text.replace(job_id, "<id>")


ROUTES = [
    ("GET", "/job?id={id}"),
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/jobs/{id}/runs"),
    ("DELETE", "/v1/jobs/{id}"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
@pytest.mark.parametrize("which", ["done", "future"])
def test_foreign_id_is_404_like_a_missing_one(
    alice_jobs: dict[str, Any], bob: httpx.Client, method: str, route: str, which: str
) -> None:
    theirs = alice_jobs[which]
    missing = str(uuid.uuid4())
    foreign = bob.request(method, route.format(id=theirs))
    absent = bob.request(method, route.format(id=missing))
    assert foreign.status_code == 404, foreign.text
    assert foreign.json()["error"]["code"] == "not_found"
    assert _normalised(foreign, theirs) == _normalised(absent, missing)
    assert "alice" not in foreign.text and "secret" not in foreign.text


def test_bob_changes_nothing_of_alices(alice_jobs: dict[str, Any], bob: httpx.Client) -> None:
    alice = alice_jobs["client"]
    future = alice_jobs["future"]
    before = get_job(alice, future)
    assert bob.delete(f"/v1/jobs/{future}").status_code == 404
    after = get_job(alice, future)
    assert after == before
    assert after["status"] == "PENDING"
    assert len(get_runs(alice, alice_jobs["done"])) == 1


def test_lists_show_nothing_of_alices(alice_jobs: dict[str, Any], bob: httpx.Client) -> None:
    r = bob.get("/jobs")
    assert r.status_code == 200, r.text
    assert r.json() == []
    for params in ({}, {"project_id": "secret-project"}, {"status": "COMPLETED"}):
        r = bob.get("/v1/jobs", params=params)
        assert r.status_code == 200, r.text
        assert r.json()["items"] == [], params
    # Alice's own list still has both.
    listed = {j["job_id"] for j in alice_jobs["client"].get("/v1/jobs").json()["items"]}
    assert {alice_jobs["done"], alice_jobs["future"]} <= listed


def test_same_project_id_does_not_share_jobs(alice_jobs: dict[str, Any], bob: httpx.Client) -> None:
    mine = submit(bob, project_id="secret-project", payload="bob-data")
    items = bob.get("/v1/jobs", params={"project_id": "secret-project"}).json()["items"]
    assert [j["job_id"] for j in items] == [mine]
    alice_items = (
        alice_jobs["client"]
        .get("/v1/jobs", params={"project_id": "secret-project"})
        .json()["items"]
    )
    assert mine not in {j["job_id"] for j in alice_items}
