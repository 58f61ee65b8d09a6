"""Every bad input gets a clear JSON 4xx error, fast, and stores nothing.

"Nothing stored" is checked twice: the caller's own lists stay empty, and the
server-wide `jobs_created_total` counter does not move.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .helpers import Guard, assert_error, list_jobs, make_client, new_user

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerFactory, ServerHandle

OK = {"project_id": "p", "payload": "x"}
CREATE_ROUTES = ["/submit", "/v1/jobs"]


def _post_raw(
    client: httpx.Client, route: str, body: bytes | str, **headers: str
) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return client.post(
        route, content=content, headers={"Content-Type": "application/json", **headers}
    )


# -- the job spec ---------------------------------------------------------------------

BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-field", {**OK, "bogus": 1}, "bogus"),
    ("max-retries-string", {**OK, "max_retries": "3"}, "max_retries"),
    ("max-retries-negative", {**OK, "max_retries": -1}, "max_retries"),
    ("max-retries-float", {**OK, "max_retries": 1.5}, "max_retries"),
    ("max-retries-bool", {**OK, "max_retries": True}, "max_retries"),
    ("project-missing", {"payload": "x"}, "project_id"),
    ("payload-missing", {"project_id": "p"}, "payload"),
    ("project-empty", {**OK, "project_id": ""}, "project_id"),
    ("project-too-long", {**OK, "project_id": "p" * 201}, "project_id"),
    ("project-number", {**OK, "project_id": 5}, "project_id"),
    ("payload-null", {**OK, "payload": None}, "payload"),
    ("payload-number", {**OK, "payload": 5}, "payload"),
    ("rfc3339-month-13", {**OK, "next_fire_at": "2026-13-01T00:00:00Z"}, "next_fire_at"),
    ("rfc3339-no-offset", {**OK, "next_fire_at": "2026-12-01T00:00:00"}, "next_fire_at"),
    ("rfc3339-date-only", {**OK, "next_fire_at": "2026-12-01"}, "next_fire_at"),
    ("rfc3339-words", {**OK, "next_fire_at": "tomorrow"}, "next_fire_at"),
    ("rfc3339-number", {**OK, "next_fire_at": 1767225600}, "next_fire_at"),
    ("rfc3339-hour-25", {**OK, "next_fire_at": "2026-12-01T25:00:00Z"}, "next_fire_at"),
    ("cron-minute-61", {**OK, "cron_schedule": "61 * * * *"}, "cron_schedule"),
    ("cron-3-fields", {**OK, "cron_schedule": "* * *"}, "cron_schedule"),
    ("cron-7-fields", {**OK, "cron_schedule": "* * * * * * *"}, "cron_schedule"),
    ("cron-words", {**OK, "cron_schedule": "every tuesday"}, "cron_schedule"),
    ("cron-seconds-60", {**OK, "cron_schedule": "60 * * * * *"}, "cron_schedule"),
    ("cron-step-0", {**OK, "cron_schedule": "*/0 * * * *"}, "cron_schedule"),
    ("cron-unknown-descriptor", {**OK, "cron_schedule": "@fortnightly"}, "cron_schedule"),
    ("every-bare", {**OK, "cron_schedule": "@every"}, "cron_schedule"),
    ("every-0s", {**OK, "cron_schedule": "@every 0s"}, "cron_schedule"),
    ("every-banana", {**OK, "cron_schedule": "@every banana"}, "cron_schedule"),
    ("every-negative", {**OK, "cron_schedule": "@every -5s"}, "cron_schedule"),
    ("every-no-unit", {**OK, "cron_schedule": "@every 5"}, "cron_schedule"),
    ("cron-number", {**OK, "cron_schedule": 5}, "cron_schedule"),
    (
        "timezone-unknown",
        {**OK, "cron_schedule": "0 * * * *", "timezone": "Mars/Olympus_Mons"},
        "timezone",
    ),
    ("timeout-zero", {**OK, "timeout_seconds": 0}, "timeout_seconds"),
    ("timeout-negative", {**OK, "timeout_seconds": -1}, "timeout_seconds"),
    ("timeout-string", {**OK, "timeout_seconds": "10"}, "timeout_seconds"),
]


@pytest.mark.parametrize("route", CREATE_ROUTES)
@pytest.mark.parametrize(
    ("spec", "field"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_spec_is_400_naming_the_field(
    guard: Guard, route: str, spec: dict[str, Any], field: str
) -> None:
    r = guard.client.post(route, json=spec)
    error = assert_error(r, 400, "validation_error")
    assert error.get("field") == field, error
    guard.assert_nothing_stored()


def test_cron_error_message_quotes_the_expression(guard: Guard) -> None:
    r = guard.client.post("/submit", json={**OK, "cron_schedule": "61 * * * *"})
    error = assert_error(r, 400, "validation_error", "cron_schedule")
    assert "61 * * * *" in error["message"], error


INVALID_JSON: list[tuple[str, bytes | str, bytes | str]] = [
    # (case, body for a job spec route, body for the batch route)
    ("truncated", '{"project_id": ', '{"jobs": [{"project_id": '),
    ("not-json", "not json at all", "not json at all"),
    # A syntax error is reported as such even after a field the schema would reject.
    ("truncated-after-unknown-field", '{"bogus": 1, "project_id": ', '{"jobs": [{"bogus": 1}, '),
    (
        "trailing-comma",
        '{"project_id": "p", "payload": "x",}',
        '{"jobs": [{"project_id": "p", "payload": "x"},]}',
    ),
    ("single-quotes", "{'project_id': 'p', 'payload': 'x'}", "{'jobs': []}"),
    (
        "bad-utf8",
        b'{"project_id": "\xff\xfe", "payload": "x"}',
        b'{"jobs": [{"project_id": "\xff\xfe", "payload": "x"}]}',
    ),
]


@pytest.mark.parametrize("route", [*CREATE_ROUTES, "/v1/jobs:batch"])
@pytest.mark.parametrize(
    ("spec_body", "batch_body"), [c[1:] for c in INVALID_JSON], ids=[c[0] for c in INVALID_JSON]
)
def test_invalid_json_is_400(
    guard: Guard, route: str, spec_body: str | bytes, batch_body: str | bytes
) -> None:
    body = batch_body if route.endswith(":batch") else spec_body
    r = _post_raw(guard.client, route, body)
    assert_error(r, 400, "invalid_json")
    guard.assert_nothing_stored()


@pytest.mark.parametrize("route", CREATE_ROUTES)
@pytest.mark.parametrize("body", ["", "[]", "null", "42", '"a string"', '[{"project_id": "p"}]'])
def test_non_object_body_is_400(guard: Guard, route: str, body: str) -> None:
    r = _post_raw(guard.client, route, body)
    assert_error(r, 400)
    guard.assert_nothing_stored()


@pytest.mark.parametrize("route", CREATE_ROUTES)
def test_deeply_nested_body_is_400_not_500(guard: Guard, route: str) -> None:
    depth = 50_000
    body = '{"project_id": "p", "payload": "x", "max_retries": ' + "[" * depth + "]" * depth + "}"
    r = _post_raw(guard.client, route, body)
    assert_error(r, 400)
    guard.assert_nothing_stored()


# -- batches ---------------------------------------------------------------------------


def test_valid_batch_creates_all(server: ServerHandle) -> None:
    with make_client(server.url, new_user("batch")) as client:
        specs = [{"project_id": "b", "payload": f"item-{i}"} for i in range(3)]
        r = client.post("/v1/jobs:batch", json={"jobs": specs})
        assert r.status_code == 201, r.text
        items = r.json()["items"]
        assert [j["payload"] for j in items] == ["item-0", "item-1", "item-2"]
        assert sorted(j["job_id"] for j in list_jobs(client)) == sorted(j["job_id"] for j in items)


def test_batch_with_one_bad_item_stores_nothing(guard: Guard) -> None:
    specs: list[dict[str, Any]] = [{"project_id": "b", "payload": f"item-{i}"} for i in range(5)]
    specs[3]["cron_schedule"] = "61 * * * *"
    r = guard.client.post("/v1/jobs:batch", json={"jobs": specs})
    error = assert_error(r, 400, "validation_error", "jobs[3].cron_schedule")
    assert "61 * * * *" in error["message"]
    guard.assert_nothing_stored()


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"project_id": "b", "payload": "x", "extra": True}, "jobs[1].extra"),
        ({"project_id": "b", "payload": "x", "max_retries": "3"}, "jobs[1].max_retries"),
        ({"project_id": "b"}, "jobs[1].payload"),
        (
            {"project_id": "b", "payload": "x", "next_fire_at": "2026-13-01T00:00:00Z"},
            "jobs[1].next_fire_at",
        ),
    ],
)
def test_batch_error_names_the_item_field(guard: Guard, item: dict[str, Any], field: str) -> None:
    r = guard.client.post("/v1/jobs:batch", json={"jobs": [OK, item, OK]})
    assert_error(r, 400, "validation_error", field)
    guard.assert_nothing_stored()


@pytest.mark.parametrize(
    "body",
    [
        {"jobs": []},
        {"jobs": [OK] * 1001},
        {"jobs": OK},
        {"jobs": None},
        {},
        {"jobs": [OK], "extra": 1},
        {"jobs": ["not an object"]},
    ],
    ids=["empty", "over-1000", "not-a-list", "null", "missing", "extra-field", "item-not-object"],
)
def test_bad_batch_envelope_is_400(guard: Guard, body: dict[str, Any]) -> None:
    r = guard.client.post("/v1/jobs:batch", json=body)
    assert_error(r, 400)
    guard.assert_nothing_stored()


def test_batch_of_exactly_1000_is_accepted(server: ServerHandle) -> None:
    with make_client(server.url, new_user("batch")) as client:
        specs = [
            {"project_id": "b", "payload": f"i{i}", "next_fire_at": "2099-01-01T00:00:00Z"}
            for i in range(1000)
        ]
        r = client.post("/v1/jobs:batch", json={"jobs": specs})
        assert r.status_code == 201, r.text[:300]
        assert len(r.json()["items"]) == 1000
        assert len(list_jobs(client)) == 1000


# -- identity, ids, methods, query parameters -----------------------------------------

# A fixed id, not uuid4(): parallel test workers (pytest-xdist) must collect the same
# parametrized test names.
ANY_ID = "5f0c3c1e-8d7a-4b61-9a2e-0c4d2b7e9f13"
USER_ROUTES = [
    ("POST", "/submit", OK),
    ("POST", "/v1/jobs", OK),
    ("POST", "/v1/jobs:batch", {"jobs": [OK]}),
    ("GET", "/jobs", None),
    ("GET", f"/job?id={ANY_ID}", None),
    ("GET", "/v1/jobs", None),
    ("GET", f"/v1/jobs/{ANY_ID}", None),
    ("GET", f"/v1/jobs/{ANY_ID}/runs", None),
    ("DELETE", f"/v1/jobs/{ANY_ID}", None),
]


@pytest.mark.parametrize("user_header", [None, ""], ids=["absent", "blank"])
@pytest.mark.parametrize(("method", "route", "body"), USER_ROUTES)
def test_missing_user_is_401(
    guard: Guard, method: str, route: str, body: Any, user_header: str | None
) -> None:
    headers = {} if user_header is None else {"X-User-ID": user_header}
    with make_client(guard.server.url, None) as anonymous:
        r = anonymous.request(method, route, json=body, headers=headers)
    assert_error(r, 401, "missing_user_id")
    guard.assert_nothing_stored()


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("GET", "/v1/jobs/not-a-uuid"),
        ("GET", "/v1/jobs/not-a-uuid/runs"),
        ("DELETE", "/v1/jobs/not-a-uuid"),
        ("GET", "/v1/jobs/1'%20OR%20'1'='1"),
        ("GET", "/v1/jobs/" + "a" * 5000),
        ("GET", "/v1/jobs/" + ANY_ID + "x"),
        ("GET", "/job?id=xyz"),
        ("GET", "/job?id=" + ANY_ID[:-1]),
    ],
)
def test_malformed_job_id_is_400(guard: Guard, method: str, route: str) -> None:
    r = guard.client.request(method, route)
    assert_error(r, 400, "invalid_job_id")


@pytest.mark.parametrize("route", ["/job", "/job?id="])
def test_job_without_id_is_400(guard: Guard, route: str) -> None:
    assert_error(guard.client.get(route), 400)


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("PUT", "/submit"),
        ("GET", "/submit"),
        ("DELETE", "/submit"),
        ("PUT", "/v1/jobs"),
        ("POST", "/jobs"),
        ("POST", "/job"),
        ("POST", f"/v1/jobs/{ANY_ID}"),
        ("GET", "/v1/jobs:batch"),
    ],
)
def test_wrong_method_is_405(guard: Guard, method: str, route: str) -> None:
    r = guard.client.request(method, route, json=OK if method in ("PUT", "POST") else None)
    assert_error(r, 405, "method_not_allowed")
    guard.assert_nothing_stored()


def test_unknown_route_is_404_json(guard: Guard) -> None:
    r = guard.client.get("/v1/nothing-here")
    assert_error(r, 404)


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"limit": -1}, {"cursor": "garbage!!"}],
    ids=["limit-0", "limit-1001", "limit-text", "limit-negative", "cursor-garbage"],
)
def test_bad_list_parameters_are_400(guard: Guard, params: dict[str, Any]) -> None:
    assert_error(guard.client.get("/v1/jobs", params=params), 400, "validation_error")


# -- body size -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_server(module_server_factory: ServerFactory) -> ServerHandle:
    return module_server_factory("--max-body-bytes", "4096", name="small")


@pytest.mark.parametrize("route", [*CREATE_ROUTES, "/v1/jobs:batch"])
def test_body_over_the_limit_is_413(small_server: ServerHandle, route: str) -> None:
    guard = Guard(small_server)
    with guard.client:
        spec = {"project_id": "p", "payload": "y" * 5000}
        body = {"jobs": [spec]} if route.endswith(":batch") else spec
        r = guard.client.post(route, json=body)
        assert_error(r, 413, "payload_too_large")
        guard.assert_nothing_stored()


def test_chunked_body_over_the_limit_is_413(small_server: ServerHandle) -> None:
    guard = Guard(small_server)
    data = json.dumps({"project_id": "p", "payload": "z" * 20000}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    with guard.client:
        r = guard.client.post(
            "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_error(r, 413, "payload_too_large")
        guard.assert_nothing_stored()


def test_body_under_the_limit_is_accepted(small_server: ServerHandle) -> None:
    with make_client(small_server.url, new_user("val")) as client:
        r = client.post("/v1/jobs", json={"project_id": "p", "payload": "w" * 3000})
        assert r.status_code == 201, r.text
        (listed,) = list_jobs(client)  # offloaded: a list says so, the job itself has it
        assert (listed["payload"], listed["payload_offloaded"]) == (None, True)
        assert client.get(f"/v1/jobs/{listed['job_id']}").json()["payload"] == "w" * 3000
