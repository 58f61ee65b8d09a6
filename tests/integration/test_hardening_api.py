"""Issue 7 over a real server: browsers cannot drive the API, fuzzer findings, strict input,
header quirks, and the seed's metric names.

Every refusal also proves nothing was stored (the caller's lists stay empty and the
server-wide ``jobs_created_total`` does not move).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.metrics import metric_sum, scrape

from .helpers import assert_error, list_jobs, make_client, new_user

if TYPE_CHECKING:
    from .conftest import ServerHandle

OK = {"project_id": "p", "payload": "cmd:id -un"}
BODY = json.dumps(OK)
CREATE_ROUTES = ["/submit", "/v1/jobs"]


class Guard:
    """A fresh user plus a snapshot of ``jobs_created_total``, to prove nothing was stored."""

    def __init__(self, server: ServerHandle) -> None:
        self.server = server
        self.user = new_user("hard")
        self.client = make_client(server.url, self.user)
        self.created = metric_sum(scrape(server.url), "jobs_created_total")

    def assert_nothing_stored(self) -> None:
        assert list_jobs(self.client) == [], "a refused request stored a job"
        after = metric_sum(scrape(self.server.url), "jobs_created_total")
        assert after == self.created, f"jobs_created_total moved {self.created} -> {after}"


@pytest.fixture
def guard(server: ServerHandle) -> Iterator[Guard]:
    g = Guard(server)
    with g.client:
        yield g


def _port(server: ServerHandle) -> int:
    return httpx.URL(server.url).port or 80


# -- 1. browsers cannot drive the API ---------------------------------------------------


@pytest.mark.parametrize("route", [*CREATE_ROUTES, "/v1/jobs:batch"])
@pytest.mark.parametrize(
    "host", ["attacker.example:{port}", "attacker.example", "127.0.0.1.nip.io"]
)
def test_a_rebound_host_is_refused(guard: Guard, route: str, host: str) -> None:
    body = {"jobs": [OK]} if route.endswith(":batch") else OK
    headers = {"Host": host.format(port=_port(guard.server))}
    r = guard.client.post(route, json=body, headers=headers)
    assert_error(r, 421, "host_not_allowed")
    assert "access-control-allow-origin" not in r.headers
    guard.assert_nothing_stored()


def test_reads_under_a_rebound_host_are_refused(guard: Guard) -> None:
    for route in ("/jobs", "/v1/jobs", "/openapi.json"):
        r = guard.client.get(route, headers={"Host": "attacker.example"})
        assert_error(r, 421, "host_not_allowed")


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:{port}", "localhost", "LOCALHOST:{port}", "[::1]:{port}",
             "[::1]", "::1"],
)  # fmt: skip
def test_loopback_hosts_are_served(server: ServerHandle, host: str) -> None:
    with make_client(server.url, new_user("host")) as client:
        r = client.get("/v1/jobs", headers={"Host": host.format(port=_port(server))})
    assert r.status_code == 200, r.text


def test_health_and_metrics_answer_any_host(server: ServerHandle) -> None:
    for route in ("/health", "/metrics"):
        r = httpx.get(server.url + route, headers={"Host": "chronoq-api:8080"})
        assert r.status_code == 200, (route, r.text)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonp",
    ],
)
@pytest.mark.parametrize("route", CREATE_ROUTES)
def test_a_body_that_is_not_json_is_415(guard: Guard, route: str, content_type: str) -> None:
    r = guard.client.post(route, content=BODY, headers={"Content-Type": content_type})
    assert_error(r, 415, "unsupported_media_type")
    guard.assert_nothing_stored()


def test_a_batch_sent_as_text_is_415(guard: Guard) -> None:
    r = guard.client.post(
        "/v1/jobs:batch", content=json.dumps({"jobs": [OK]}), headers={"Content-Type": "text/plain"}
    )
    assert_error(r, 415, "unsupported_media_type")
    guard.assert_nothing_stored()


def test_a_body_without_content_type_is_415(guard: Guard) -> None:
    request = guard.client.build_request("POST", "/v1/jobs", content=BODY)
    request.headers.pop("Content-Type", None)
    assert_error(guard.client.send(request), 415, "unsupported_media_type")
    guard.assert_nothing_stored()


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_with_or_without_charset_is_accepted(server: ServerHandle, content_type: str) -> None:
    with make_client(server.url, new_user("ct")) as client:
        r = client.post(
            "/v1/jobs", content=json.dumps({"project_id": "p", "payload": "x"}),
            headers={"Content-Type": content_type},
        )  # fmt: skip
    assert r.status_code == 201, r.text


def test_no_cors_headers(server: ServerHandle) -> None:
    origin = {"Origin": "http://attacker.example", "Access-Control-Request-Method": "POST"}
    with make_client(server.url, new_user("cors")) as client:
        answers = [
            client.options("/v1/jobs", headers=origin),
            client.get("/v1/jobs", headers=origin),
            client.post("/v1/jobs", json={"project_id": "p", "payload": "x"}, headers=origin),
        ]
    for r in answers:
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], r.headers
