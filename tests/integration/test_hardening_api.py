"""Issue 7 over a real server: browsers cannot drive the API, fuzzer findings, strict input,
header quirks, and the seed's metric names.

Every refusal also proves nothing was stored (the caller's lists stay empty and the
server-wide ``jobs_created_total`` does not move).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support.metrics import metric_sum, parse_metrics, scrape
from tests.support.waiting import wait_for

from .helpers import Guard, assert_error, create, list_jobs, make_client, new_user
from .test_untrusted_output import postgres_dsn  # noqa: F401  (a module fixture)

if TYPE_CHECKING:
    from .conftest import ServerFactory, ServerHandle

OK = {"project_id": "p", "payload": "cmd:id -un"}
BODY = json.dumps(OK)
CREATE_ROUTES = ["/submit", "/v1/jobs"]
OK_ID = "0b6c6e9e-7e1c-4d0e-9a59-2f3c1b0d8f11"


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


def test_allowed_hosts_extends_the_allowlist(server_factory: ServerFactory) -> None:
    """``--allowed-hosts`` names the Host names clients use (a load balancer's); the rest
    stay refused."""
    named = server_factory("--allowed-hosts", "sched.example, lb.example:8443")
    with make_client(named.url, new_user("named")) as client:
        for host in ("sched.example", f"sched.example:{_port(named)}", "lb.example:8443"):
            r = client.get("/v1/jobs", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
        assert_error(
            client.get("/v1/jobs", headers={"Host": "evil.example"}), 421, "host_not_allowed"
        )


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


# -- 6. the fuzzer's findings -------------------------------------------------------------


@pytest.mark.parametrize("limit", ["²", "٥", "①", "𝟓", "+5", " 5", "", "00001000000"])
@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/jobs/{job_id}/runs"])
def test_a_limit_that_is_not_ascii_digits_is_400(
    server: ServerHandle, route: str, limit: str
) -> None:
    with make_client(server.url, new_user("lim")) as client:
        job_id = client.post("/v1/jobs", json={"project_id": "p", "payload": "x"}).json()["job_id"]
        r = client.get(route.format(job_id=job_id), params={"limit": limit})
    assert_error(r, 400, "validation_error", "limit")


def _document(server: ServerHandle) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(server.url + "/openapi.json").json()
    return doc


def _schema(doc: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][path][method]["responses"][status]["content"][
        "application/json"
    ]["schema"]
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _items_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    ref: str = _schema(doc, path, "get", "200")["items"]["$ref"]
    schema: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def _conforms(body: dict[str, Any], schema: dict[str, Any]) -> None:
    missing = set(schema.get("required", ())) - set(body)
    assert not missing, f"the body lacks fields its schema requires: {missing}"
    unknown = set(body) - set(schema["properties"])
    assert not unknown, f"the body has fields its schema does not declare: {unknown}"


@pytest.mark.parametrize("cron", [None, "@every 1h"])
def test_every_job_body_has_what_its_schema_requires(
    server: ServerHandle, cron: str | None
) -> None:
    doc = _document(server)
    spec = {"project_id": "p", "payload": "x", **({"cron_schedule": cron} if cron else {})}
    with make_client(server.url, new_user("shape")) as client:
        job_id = client.post("/submit", json=spec).json()["job_id"]
        _conforms(
            client.get("/job", params={"id": job_id}).json(), _schema(doc, "/job", "get", "200")
        )
        (summary,) = client.get("/jobs").json()
        _conforms(summary, _items_schema(doc, "/jobs"))
        _conforms(
            client.get(f"/v1/jobs/{job_id}").json(), _schema(doc, "/v1/jobs/{job_id}", "get", "200")
        )
        page = client.get("/v1/jobs").json()
        _conforms(page, _schema(doc, "/v1/jobs", "get", "200"))


def test_the_schema_states_what_validation_refuses(server: ServerHandle) -> None:
    doc = _document(server)
    job_in = doc["components"]["schemas"]["JobIn"]["properties"]
    assert job_in["project_id"]["minLength"] == 1
    assert job_in["project_id"]["maxLength"] == 200

    def param(path: str, method: str, name: str) -> dict[str, Any]:
        (found,) = [p for p in doc["paths"][path][method]["parameters"] if p["name"] == name]
        schema: dict[str, Any] = found["schema"]
        return schema

    assert param("/job", "get", "id")["minLength"] == 1
    assert param("/v1/jobs", "get", "limit") == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }
    assert param("/v1/jobs", "post", "X-User-ID")["minLength"] == 1
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "requestBody" in op:
                assert "415" in op["responses"], (path, method)


@pytest.mark.parametrize(
    ("method", "route", "allow"),
    [
        ("PUT", "/v1/jobs", "GET, HEAD, POST"),
        ("PUT", "/v1/jobs/{job_id}", "DELETE, GET, HEAD, PATCH"),  # PATCH: issue 9
        ("DELETE", "/submit", "POST"),
        ("POST", "/job", "GET, HEAD"),
        ("POST", "/v1/jobs/{job_id}/runs", "GET, HEAD"),
    ],
)
def test_405_carries_allow(server: ServerHandle, method: str, route: str, allow: str) -> None:
    with make_client(server.url, new_user("allow")) as client:
        r = client.request(method, route.format(job_id=OK_ID), json={})
    assert_error(r, 405, "method_not_allowed")
    assert r.headers.get("allow") == allow, r.headers


# -- 7. strict input, the same on every store -----------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"project_id": "p\u0000q", "payload": "x"}, "project_id"),
        ({"project_id": "p", "payload": "x\u0000"}, "payload"),
        ({"project_id": "p", "payload": "cmd:echo a\u0000b"}, "payload"),
        ({"project_id": "p", "payload": "x", "cron_schedule": "@every 1s\u0000"}, "cron_schedule"),
        (
            {
                "project_id": "p",
                "payload": "x",
                "cron_schedule": "@every 1h",
                "timezone": "UTC\u0000",
            },
            "timezone",
        ),
        (
            {"project_id": "p", "payload": "x", "next_fire_at": "2030-01-02T03:04:05Z\u0000"},
            "next_fire_at",
        ),
    ],
)
@pytest.mark.parametrize("route", CREATE_ROUTES)
def test_a_nul_in_any_text_field_is_400_naming_it(
    guard: Guard, route: str, spec: dict[str, Any], field: str
) -> None:
    assert_error(guard.client.post(route, json=spec), 400, "validation_error", field)
    guard.assert_nothing_stored()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store_server(
    request: pytest.FixtureRequest, module_server_factory: ServerFactory
) -> ServerHandle:
    """``chronoq up`` on SQLite, or on PostgreSQL (skipped when none is reachable)."""
    if request.param == "sqlite":
        return module_server_factory(name="sqlite")
    dsn = request.getfixturevalue("postgres_dsn")
    return module_server_factory("--store", dsn, name="postgres")


@pytest.mark.parametrize("field", ["project_id", "payload"])
def test_a_nul_is_the_same_400_on_every_store(store_server: ServerHandle, field: str) -> None:
    g = Guard(store_server)
    with g.client:
        spec = {"project_id": "p", "payload": "x", field: "a\u0000b"}
        for route in CREATE_ROUTES:
            assert_error(g.client.post(route, json=spec), 400, "validation_error", field)
        g.assert_nothing_stored()


def test_a_nul_in_a_batch_item_names_the_item(guard: Guard) -> None:
    body = {
        "jobs": [{"project_id": "p", "payload": "x"}, {"project_id": "p", "payload": "a\u0000"}]
    }
    r = guard.client.post("/v1/jobs:batch", json=body)
    assert_error(r, 400, "validation_error", "jobs[1].payload")
    guard.assert_nothing_stored()


def test_a_nul_in_the_project_filter_is_400(guard: Guard) -> None:
    r = guard.client.get("/v1/jobs", params={"project_id": "p\u0000"})
    assert_error(r, 400, "validation_error", "project_id")


def test_a_project_filter_longer_than_any_project_id_is_400(guard: Guard) -> None:
    r = guard.client.get("/v1/jobs", params={"project_id": "p" * 201})
    assert_error(r, 400, "validation_error", "project_id")
    assert guard.client.get("/v1/jobs", params={"project_id": "p" * 200}).status_code == 200


def test_an_empty_cursor_is_the_first_page(server: ServerHandle) -> None:
    with make_client(server.url, new_user("cursor")) as client:
        job = create(client, project_id="p", payload="x", next_fire_at="2099-01-01T00:00:00Z")
        r = client.get("/v1/jobs", params={"cursor": ""})
    assert r.status_code == 200, r.text
    assert [item["job_id"] for item in r.json()["items"]] == [job["job_id"]]


@pytest.mark.parametrize("route", CREATE_ROUTES)
def test_max_retries_is_a_json_integer_3_point_0_included(server: ServerHandle, route: str) -> None:
    with make_client(server.url, new_user("retries")) as client:
        ok = client.post(route, json={"project_id": "p", "payload": "x", "max_retries": 3.0})
        assert ok.status_code == 201, ok.text
        job_id = ok.json()["job_id"]
        assert client.get(f"/v1/jobs/{job_id}").json()["max_retries"] == 3
        for bad in (3.5, 1e300, -1.0, 101):
            r = client.post(route, json={"project_id": "p", "payload": "x", "max_retries": bad})
            assert_error(r, 400, "validation_error", "max_retries")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"timezone": "Europe/Berlin", "cron_schedule": None}, "timezone"),
        ({"timezone": "posixrules", "cron_schedule": "* * * * *"}, "timezone"),
        ({"timezone": "Not/AZone", "cron_schedule": "* * * * *"}, "timezone"),
    ],
)
def test_a_timezone_needs_a_cron_and_a_known_name(
    guard: Guard, spec: dict[str, Any], field: str
) -> None:
    r = guard.client.post("/v1/jobs", json={"project_id": "p", "payload": "x", **spec})
    assert_error(r, 400, "validation_error", field)
    guard.assert_nothing_stored()


def test_the_schema_lists_exactly_the_accepted_timezones(server: ServerHandle) -> None:
    timezone = _document(server)["components"]["schemas"]["JobIn"]["properties"]["timezone"]
    (names,) = [branch["enum"] for branch in timezone["anyOf"] if "enum" in branch]
    assert "Europe/Berlin" in names and "UTC" in names and "posixrules" not in names
    with make_client(server.url, new_user("zones")) as client:
        for name in names[:: max(1, len(names) // 25)]:  # a spread of the list
            r = client.post(
                "/v1/jobs", json={"project_id": "p", "payload": "x", "cron_schedule": "@daily",
                                  "timezone": name},
            )  # fmt: skip
            assert r.status_code == 201, (name, r.text)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"next_fire_at": "2030-W01-1T00:00:00Z"}, "next_fire_at"),
        ({"next_fire_at": "2030-01-02T03:04Z"}, "next_fire_at"),
        ({"next_fire_at": "2030-01-02T03:04:05Z "}, "next_fire_at"),
        ({"next_fire_at": "2030-01-02T03:04:05+0100"}, "next_fire_at"),
        ({"cron_schedule": "@every ٥s"}, "cron_schedule"),
        ({"cron_schedule": "٥ * * * *"}, "cron_schedule"),
        ({"cron_schedule": "@every\t5s"}, "cron_schedule"),
        ({"timeout_seconds": 1e-300}, "timeout_seconds"),
        ({"timeout_seconds": 0.0009}, "timeout_seconds"),
    ],
)
@pytest.mark.parametrize("route", CREATE_ROUTES)
def test_odd_input_is_400(guard: Guard, route: str, spec: dict[str, Any], field: str) -> None:
    r = guard.client.post(route, json={"project_id": "p", "payload": "x", **spec})
    assert_error(r, 400, "validation_error", field)
    guard.assert_nothing_stored()


@pytest.mark.parametrize(
    "spec",
    [
        {"next_fire_at": "2030-01-02 03:04:05z"},
        {"next_fire_at": "2030-01-02t03:04:05.123456789+05:30"},
        {"timeout_seconds": 0.001},
        {"cron_schedule": " @every 5s "},
    ],
)
def test_strict_but_valid_input_is_accepted(server: ServerHandle, spec: dict[str, Any]) -> None:
    with make_client(server.url, new_user("ok")) as client:
        r = client.post("/v1/jobs", json={"project_id": "p", "payload": "x", **spec})
    assert r.status_code == 201, r.text


# -- 8. header quirks and opaque cursors ----------------------------------------------------


USER_ROUTES = [
    ("POST", "/submit", OK),
    ("POST", "/v1/jobs", OK),
    ("POST", "/v1/jobs:batch", {"jobs": [OK]}),
    ("GET", "/jobs", None),
    ("GET", f"/job?id={OK_ID}", None),
    ("GET", "/v1/jobs", None),
    ("GET", f"/v1/jobs/{OK_ID}", None),
    ("GET", f"/v1/jobs/{OK_ID}/runs", None),
    ("DELETE", f"/v1/jobs/{OK_ID}", None),
]


@pytest.mark.parametrize(("method", "route", "body"), USER_ROUTES)
def test_a_duplicated_user_header_is_400(
    guard: Guard, method: str, route: str, body: dict[str, Any] | None
) -> None:
    with make_client(guard.server.url, None) as anonymous:
        headers = [("X-User-ID", guard.user), ("X-User-ID", "someone-else")]
        r = anonymous.request(method, route, json=body, headers=headers)
    assert_error(r, 400, "validation_error", "X-User-ID")
    guard.assert_nothing_stored()


def _page(client: httpx.Client, **params: Any) -> dict[str, Any]:
    r = client.get("/v1/jobs", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_cursors_are_opaque_and_reveal_nothing_about_others(server: ServerHandle) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    with make_client(server.url, alice) as a, make_client(server.url, bob) as b:
        for _ in range(3):
            assert a.post("/v1/jobs", json={"project_id": "p", "payload": "x"}).status_code == 201
        first = _page(a, limit=1)["next_cursor"]
        again = _page(a, limit=1)["next_cursor"]
        for _ in range(5):
            assert b.post("/v1/jobs", json={"project_id": "p", "payload": "x"}).status_code == 201
        second = _page(a, limit=1, cursor=first)["next_cursor"]
        assert first and again and second
        assert first != again, "the same position must not give the same cursor (a count leaks)"
        for cursor in (first, second):
            assert not cursor.isdigit(), f"a cursor that reads as a number: {cursor}"
        # another user cannot use them, a tampered one is refused
        assert_error(b.get("/v1/jobs", params={"cursor": first}), 400, "validation_error", "cursor")
        mid = len(first) // 2
        tampered = first[:mid] + ("A" if first[mid] != "A" else "B") + first[mid + 1 :]
        assert_error(
            a.get("/v1/jobs", params={"cursor": tampered}), 400, "validation_error", "cursor"
        )
        for raw in ("1", "12345", "0"):
            assert_error(
                a.get("/v1/jobs", params={"cursor": raw}), 400, "validation_error", "cursor"
            )
        # and they still page through every job, oldest first, once each
        assert len(list_jobs(a)) == 3
        ids: list[str] = []
        cursor = None
        while True:
            body = _page(a, limit=1, **({"cursor": cursor} if cursor else {}))
            ids += [job["job_id"] for job in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(ids) == len(set(ids)) == 3


# -- 10. the seed's metrics as the seed named them -------------------------------------------

SEED_README = Path("/work/shared/seed/README.md")
SEED_KEY_METRICS = """\
- `http_requests_total` - API request count
- `jobs_executed_total{status="success|failed"}` - Job execution status
- `job_execution_duration_seconds` - Job execution latency
- `s3_operations_total{operation="upload|download"}` - S3 operations
- `sqs_enqueue_duration_seconds` - SQS publish latency
"""
"""The seed README's "Key Metrics", verbatim (checked against the file where it exists)."""
_LISTED = re.compile(r"`([a-z_]+)(?:\{([a-z_]+)=\"([^\"]+)\"\})?`")


def _seed_metrics() -> list[tuple[str, str | None, list[str]]]:
    return [
        (name, label or None, values.split("|") if values else [])
        for name, label, values in _LISTED.findall(SEED_KEY_METRICS)
    ]


def test_the_seed_metric_list_is_the_seed_readme_s() -> None:
    if not SEED_README.exists():
        pytest.skip(f"{SEED_README} is not on this machine")
    readme = SEED_README.read_text()
    for line in SEED_KEY_METRICS.splitlines():
        assert line in readme, f"the seed README no longer lists: {line}"


def test_every_seed_metric_and_label_value_is_exported_and_moves(server: ServerHandle) -> None:
    before = scrape(server.url)
    with make_client(server.url, new_user("seedmetrics")) as api:
        ids = [
            api.post("/submit", json={"project_id": "p", "payload": payload}).json()["job_id"]
            for payload in ("seed-ok", "cmd:exit 3", "big:" + "x" * 4096)
        ]
        assert all(ids), ids

    def moved(name: str, **labels: str) -> bool:
        return metric_sum(scrape(server.url), name, **labels) > metric_sum(before, name, **labels)

    for name, label, values in _seed_metrics():
        exported = {n for n, _, _ in parse_metrics(scrape(server.url))}
        sample = f"{name}_count" if f"{name}_count" in exported else name
        assert sample in exported, f"{name} is not in the /metrics exposition"
        if label is None:
            assert wait_for(lambda s=sample: moved(s), 15), f"{sample} did not move"
        for value in values:
            assert wait_for(lambda s=sample, v=value, k=label: moved(s, **{k: v}), 15), (
                f'{name}{{{label}="{value}"}} did not move'
            )


def test_detailed_run_statuses_are_kept_under_runs_finished(server: ServerHandle) -> None:
    with make_client(server.url, new_user("finished")) as api:
        api.post("/submit", json={"project_id": "p", "payload": "cmd:exit 5"})

    def failed() -> bool:
        return metric_sum(scrape(server.url), "runs_finished_total", status="FAILED") >= 1

    assert wait_for(failed, 15)
    text = scrape(server.url)
    executed = {
        labels["status"] for n, labels, _ in parse_metrics(text) if n == "jobs_executed_total"
    }
    assert executed == {"success", "failed"}, executed


@pytest.mark.parametrize("blank", ["\u001f\u00a0", "\u0085", " \t"])
def test_blank_means_the_same_to_the_schema_and_the_validation(
    server: ServerHandle, guard: Guard, blank: str
) -> None:
    """Python's ``strip()`` blanks (U+001F, U+0085...) are what the schema's pattern refuses:
    ECMA-262's ``\\s`` would have let the fuzzer call them schema-valid."""
    pattern = _document(server)["components"]["schemas"]["JobIn"]["properties"]["project_id"]
    assert re.search(pattern["pattern"], blank) is None
    assert re.search(pattern["pattern"], blank + "x") is not None
    r = guard.client.post("/v1/jobs", json={"project_id": blank, "payload": "x"})
    assert_error(r, 400, "validation_error", "project_id")
    guard.assert_nothing_stored()
