"""``--auth token`` end to end: tokens made with ``chronoq token`` beside a running server
(embedded SQLite, and PostgreSQL), bearer requests, X-User-ID ignored, 401 for missing,
malformed, unknown, expired and revoked tokens (revocation within the cache time), and
the per-address failure limit (429 + Retry-After) that never stops a valid token."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from chronoq.client import Client
from chronoq.errors import ChronoqError
from chronoq.services.api.auth import CACHE_SECONDS, FAILURE_BURST
from tests.support.postgres import create_database, drop_database
from tests.support.processes import chronoq_argv, clean_env
from tests.support.waiting import wait_for

from .auth_support import (
    ADMIN_DSN,
    bearer,
    fresh_source,
    make_token,
    postgres_problem,
    token_cli,
)
from .helpers import assert_error, new_user

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerFactory, ServerHandle

JOB = {"project_id": "auth", "payload": "hello"}
FAKE = "cq_" + "A" * 43  # well formed, never issued


@pytest.fixture(scope="module")
def token_server(module_server_factory: ServerFactory) -> ServerHandle:
    return module_server_factory("--auth", "token", name="token")


def _ids(client: httpx.Client) -> set[str]:
    r = client.get("/v1/jobs")
    assert r.status_code == 200, r.text
    return {j["job_id"] for j in r.json()["items"]}


def test_a_token_acts_as_its_user_and_x_user_id_is_ignored(token_server: ServerHandle) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    alice_token, bob_token = make_token(token_server, alice), make_token(token_server, bob)
    with (
        bearer(token_server.url, alice_token, user_header=bob) as as_alice,
        bearer(token_server.url, bob_token, user_header=alice) as as_bob,
    ):
        r = as_alice.post("/v1/jobs", json=JOB)
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        seed = as_alice.post("/submit", json=JOB)  # the seed's routes follow the mode
        assert seed.status_code == 201, seed.text
        assert _ids(as_alice) == {job_id, seed.json()["job_id"]}
        assert {j["job_id"] for j in as_alice.get("/jobs").json()} == _ids(as_alice)
        # Bob claims to be Alice in X-User-ID: his token decides, he sees nothing of hers.
        assert _ids(as_bob) == set()
        assert_error(as_bob.get(f"/v1/jobs/{job_id}"), 404, "not_found")
        assert_error(as_bob.get("/job", params={"id": job_id}), 404, "not_found")
    # X-User-ID alone is no identity in token mode.
    with bearer(token_server.url, None, user_header=alice) as header_only:
        error = assert_error(header_only.get("/v1/jobs"), 401, "missing_token", "Authorization")
        assert "Bearer" in error["message"]


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        (f"Basic {FAKE}", "invalid_token"),
        ("Bearer", "invalid_token"),
        ("Bearer cq_short", "invalid_token"),
        (f"Bearer {FAKE}x", "invalid_token"),
        (f"Bearer {FAKE}", "invalid_token"),
    ],
    ids=["absent", "blank", "basic", "no-token", "short", "long", "unknown"],
)
def test_no_valid_token_is_401(
    token_server: ServerHandle, authorization: str | None, code: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with bearer(token_server.url, None, source=fresh_source()) as client:
        for method, path in [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/jobs")]:
            r = client.request(method, path, headers=headers, json=JOB)
            assert_error(r, 401, code, "Authorization")
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    with token_server.client(None) as anonymous:  # these stay open
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/metrics").status_code == 200


def test_two_authorization_headers_are_400(token_server: ServerHandle) -> None:
    token = make_token(token_server, new_user("twice"))
    with bearer(token_server.url, None) as client:
        r = client.get(
            "/v1/jobs",
            headers=[("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {FAKE}")],
        )
    assert_error(r, 400, "validation_error", "Authorization")


def test_an_expired_token_is_401(token_server: ServerHandle) -> None:
    token = make_token(token_server, new_user("brief"), "--expires", "3s")
    with bearer(token_server.url, token) as client:
        first = client.get("/v1/jobs")
        if first.status_code == 200:  # usable until it expires, then refused
            assert wait_for(lambda: client.get("/v1/jobs").status_code == 401, 10.0)
        r = client.get("/v1/jobs")
    error = assert_error(r, 401, "invalid_token", "Authorization")
    assert "expired" in error["message"]


def test_a_revoked_token_is_refused_within_the_cache_time(token_server: ServerHandle) -> None:
    user = new_user("revoked")
    token, kept = make_token(token_server, user), make_token(token_server, user)
    with bearer(token_server.url, token) as client, bearer(token_server.url, kept) as other:
        assert client.get("/v1/jobs").status_code == 200  # now cached by the api
        token_id = token[:11]
        done = token_cli(token_server, "revoke", token_id)
        assert done.returncode == 0 and token_id in done.stdout, done.stderr
        revoked_at = time.monotonic()
        assert wait_for(lambda: client.get("/v1/jobs").status_code == 401, CACHE_SECONDS + 5)
        assert time.monotonic() - revoked_at <= CACHE_SECONDS + 2
        error = assert_error(client.get("/v1/jobs"), 401, "invalid_token")
        assert "revoked" in error["message"]
        assert other.get("/v1/jobs").status_code == 200  # the user's other token still works


def test_token_list_shows_ids_never_secrets(token_server: ServerHandle) -> None:
    user = new_user("lister")
    plain = make_token(token_server, user)
    shell = make_token(token_server, user, "--allow-shell", "--expires", "30d")
    token_cli(token_server, "revoke", plain[:11])
    listed = token_cli(token_server, "list", "--user", user, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["token_id"] for r in rows] == [plain[:11], shell[:11]]
    assert [(r["user_id"], r["allow_shell"]) for r in rows] == [(user, False), (user, True)]
    assert rows[0]["revoked_at"] is not None and rows[1]["revoked_at"] is None
    assert rows[0]["expires_at"] is None and rows[1]["expires_at"] is not None
    table = token_cli(token_server, "list")
    assert table.returncode == 0 and plain[:11] in table.stdout and user in table.stdout
    for secret in (plain, shell):
        assert secret not in listed.stdout + table.stdout
    missing = token_cli(token_server, "revoke", "cq_nothere")
    assert missing.returncode == 1 and "no token" in missing.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--expires", "yesterday"], "--expires"),
        (["--expires", "-5m"], "--expires"),
        (["--expires", "2001-01-01T00:00:00Z"], "--expires"),
        (["--user", " "], "--user"),
        (["--user", "u" * 201], "--user"),
    ],
)
def test_token_create_checks_its_options(
    token_server: ServerHandle, options: list[str], message: str
) -> None:
    done = token_cli(token_server, "create", "--user", "x", *options)  # the last --user wins
    assert done.returncode == 2 and message in done.stderr and "cq_" not in done.stdout


def test_python_client_and_cli_send_the_token(token_server: ServerHandle) -> None:
    user = new_user("client")
    token = make_token(token_server, user)
    with Client(token_server.url, user_id="someone-else", token=token) as client:
        job = client.submit("auth", "from-the-client")
        assert [j["job_id"] for j in client.jobs()] == [job["job_id"]]
    with Client(token_server.url, user_id=user) as anonymous, pytest.raises(ChronoqError):
        anonymous.jobs()
    env = clean_env({"CHRONOQ_TOKEN": token, "CHRONOQ_URL": token_server.url})
    listed = subprocess.run(
        chronoq_argv("jobs", "--json"), capture_output=True, text=True, env=env, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert [j["job_id"] for j in json.loads(listed.stdout)] == [job["job_id"]]


def test_brute_force_gets_429_while_a_valid_token_works(server_factory: ServerFactory) -> None:
    server = server_factory("--auth", "token", name="brute")
    token = make_token(server, new_user("honest"))
    statuses: list[int] = []
    address, elsewhere = fresh_source(), fresh_source()
    with (
        bearer(server.url, token, source=address) as honest,
        bearer(server.url, None, source=address) as attacker,
        bearer(server.url, None, source=elsewhere) as neighbour,
    ):
        for i in range(FAILURE_BURST + 10):
            guess = "cq_" + uuid.uuid4().hex + "B" * 11
            r = attacker.get("/v1/jobs", headers={"Authorization": f"Bearer {guess}"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert_error(r, 429, "too_many_failures")
                assert int(r.headers["Retry-After"]) >= 1
                posted = attacker.post(
                    "/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {guess}"}
                )
                assert posted.status_code == 429
            if i % 5 == 0:  # the same address, with the valid token: never refused
                assert honest.get("/v1/jobs").status_code == 200
        # The limit is per address: another address's failures are still plain 401s.
        assert_error(neighbour.get("/v1/jobs"), 401, "missing_token")
        assert honest.post("/v1/jobs", json=JOB).status_code == 201
        assert len(_ids(honest)) == 1  # nothing the refused requests sent was stored
    assert statuses[0] == 401 and 429 in statuses
    assert statuses.index(429) <= FAILURE_BURST + 2  # a little refill while we ran


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    problem = postgres_problem()
    if problem is not None:
        pytest.skip(problem)
    name = f"auth_{uuid.uuid4().hex[:10]}"
    dsn = create_database(ADMIN_DSN, name)
    try:
        yield dsn
    finally:
        drop_database(ADMIN_DSN, name)


def test_tokens_on_a_postgresql_store(server_factory: ServerFactory, postgres_dsn: str) -> None:
    server = server_factory("--auth", "token", "--store", postgres_dsn, name="pg-token")
    user = new_user("pg")
    token = make_token(server, user, store=postgres_dsn)
    with bearer(server.url, token, user_header="mallory") as client:
        r = client.post("/v1/jobs", json=JOB)
        assert r.status_code == 201, r.text
        assert _ids(client) == {r.json()["job_id"]}
    listed = token_cli(server, "list", "--json", store=postgres_dsn)
    assert [t["user_id"] for t in json.loads(listed.stdout)] == [user]
    assert token_cli(server, "revoke", token[:11], store=postgres_dsn).returncode == 0
    with bearer(server.url, token) as client:
        assert wait_for(lambda: client.get("/v1/jobs").status_code == 401, CACHE_SECONDS + 5)


def test_the_openapi_document_declares_the_bearer_scheme(token_server: ServerHandle) -> None:
    with token_server.client(None) as anonymous:
        r = anonymous.get("/openapi.json")  # open, like /health and /metrics
    assert r.status_code == 200, r.text
    document = r.json()
    scheme = document["components"]["securitySchemes"]["bearerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    operations = [op for item in document["paths"].values() for op in item.values()]
    assert len(operations) >= 10
    for operation in operations:
        assert operation["security"] == [{"bearerToken": []}], operation["summary"]
        assert {"401", "429"} <= set(operation["responses"]), operation["summary"]
        assert "Retry-After" in operation["responses"]["429"]["headers"]
        names = {p["name"] for p in operation.get("parameters", [])}
        assert "X-User-ID" not in names, operation["summary"]
