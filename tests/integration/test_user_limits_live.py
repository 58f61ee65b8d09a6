"""Per-user limits against a running ``chronoq up`` on SQLite and PostgreSQL (issue 9.9,
docs/limits.md): 429 with ``Retry-After`` on every submission route and on manual fires,
all or none for a batch, replays allowed, and a noisy user's backlog not delaying a quiet
user's fire. Real time, bounded polls; the rolling minute itself is tested on the fake
clock (tests/roles/test_user_limits.py)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.postgres import create_database, drop_database
from tests.support.waiting import wait_for

from .auth_support import postgres_problem
from .helpers import assert_error, create, get_runs, make_client, new_user

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerFactory, ServerHandle

pytestmark = pytest.mark.slow
ADMIN_DSN = os.environ.get(
    "CHRONOQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ACTIVE = 20
PER_MINUTE = 4
LIMITS = ("--user-max-active-jobs", str(ACTIVE), "--user-max-fires-per-minute", str(PER_MINUTE))
HOURLY = {"payload": "hello", "cron_schedule": "@every 1h"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"], name="server")
def limited_server(
    request: pytest.FixtureRequest, module_server_factory: ServerFactory
) -> Iterator[ServerHandle]:
    if request.param == "sqlite":
        yield module_server_factory(*LIMITS, name="sqlite")
        return
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    name = f"limits_{uuid.uuid4().hex[:10]}"
    dsn = create_database(ADMIN_DSN, name)
    handle = module_server_factory("--store", dsn, *LIMITS, name="postgres")
    try:
        yield handle
    finally:
        handle.dispose()
        drop_database(ADMIN_DSN, name)


@pytest.fixture
def api(server: ServerHandle) -> Iterator[httpx.Client]:
    with make_client(server.url, new_user("lim")) as client:
        yield client


def _limited(r: httpx.Response, code: str) -> int:
    """Assert a 429 of this limit; its ``Retry-After`` seconds."""
    assert_error(r, 429, code)
    retry_after = r.headers.get("Retry-After", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, r.headers
    return int(retry_after)


def _count(api: httpx.Client) -> int:
    r = api.get("/v1/jobs", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


def test_submissions_over_the_active_limit_get_429_and_store_nothing(
    api: httpx.Client, server: ServerHandle
) -> None:
    keyed = api.post(
        "/v1/jobs", json={"project_id": "it", **HOURLY}, headers={"Idempotency-Key": "first"}
    )
    assert keyed.status_code == 201, keyed.text
    batch = {"jobs": [{"project_id": "it", **HOURLY} for _ in range(ACTIVE - 1)]}
    assert api.post("/v1/jobs:batch", json=batch).status_code == 201

    _limited(api.post("/v1/jobs", json={"project_id": "it", **HOURLY}), "too_many_active_jobs")
    _limited(api.post("/v1/jobs:batch", json={"jobs": batch["jobs"][:2]}), "too_many_active_jobs")
    _limited(api.post("/submit", json={"project_id": "it", **HOURLY}), "too_many_active_jobs")
    assert _count(api) == ACTIVE
    replay = api.post(
        "/v1/jobs", json={"project_id": "it", **HOURLY}, headers={"Idempotency-Key": "first"}
    )
    assert replay.status_code == 200, replay.text  # a replay is not a new job
    assert replay.json()["job_id"] == keyed.json()["job_id"]
    assert api.delete(f"/v1/jobs/{keyed.json()['job_id']}").status_code in (200, 204)
    create(api, **HOURLY)  # room again
    with make_client(server.url, new_user("other")) as other:
        create(other, **HOURLY)  # one user's limit is theirs alone


def test_manual_fires_over_the_limit_get_429(api: httpx.Client) -> None:
    job = create(api, **HOURLY)
    for _ in range(PER_MINUTE):
        r = api.post(f"/v1/jobs/{job['job_id']}:trigger")
        assert r.status_code == 201, r.text

    r = api.post(f"/v1/jobs/{job['job_id']}:trigger")

    assert 1 <= _limited(r, "too_many_fires") <= 60
    assert len(get_runs(api, job["job_id"])) == PER_MINUTE


def test_a_noisy_users_backlog_does_not_delay_a_quiet_users_fire(
    api: httpx.Client, server: ServerHandle
) -> None:
    batch = {"jobs": [{"project_id": "it", "payload": "hello"} for _ in range(ACTIVE)]}
    assert api.post("/v1/jobs:batch", json=batch).status_code == 201
    with make_client(server.url, new_user("quiet")) as quiet:
        job = create(quiet, payload="hello")

        def quiet_done() -> bool:
            return any(r["status"] == "COMPLETED" for r in get_runs(quiet, job["job_id"]))

        assert wait_for(quiet_done, 15), get_runs(quiet, job["job_id"])

    noisy = api.get("/v1/jobs", params={"limit": 1000}).json()["items"]
    pending = [j for j in noisy if j["status"] == "PENDING"]
    assert len(noisy) - len(pending) <= PER_MINUTE  # the others wait for the next minute
    assert len(pending) >= ACTIVE - PER_MINUTE
    assert _deferrals(api) > 0


def _deferrals(api: httpx.Client) -> float:
    text = api.get("/metrics").text
    found = re.search(r'^user_limit_deferrals_total\{limit="fires_per_minute"\} (\S+)$', text, re.M)
    assert found is not None, text[:2000]
    return float(found.group(1))
