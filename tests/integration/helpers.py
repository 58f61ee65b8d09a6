"""API shortcuts for the end-to-end tests (generic helpers live in ``tests.support``).

Nothing here sleeps to *wait for* a condition: every wait is a poll bounded
by a deadline (``tests.support.waiting.wait_for``), and the caller asserts on
what it returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.support.metrics import metric_sum, scrape
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    from .conftest import ServerHandle

USER_HEADER = "X-User-ID"
RUN_TERMINAL = frozenset({"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED", "DEAD", "SKIPPED"})
RUN_SETTLED = RUN_TERMINAL | {"RETRY_SCHEDULED"}
JOB_TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})

JOB_FIELDS = frozenset(
    {
        "job_id",
        "project_id",
        "payload",
        "status",
        "cron_schedule",
        "timezone",
        "next_fire_at",
        "max_retries",
        "timeout_seconds",
        "created_at",
        "updated_at",
    }
)
RUN_FIELDS = frozenset(
    {
        "run_id",
        "job_id",
        "attempt",
        "status",
        "scheduled_for",
        "triggered_at",
        "started_at",
        "completed_at",
        "output",
        "exit_code",
        "worker_id",
        "error_message",
    }
)


# -- clients and API shortcuts ------------------------------------------------------


def new_user(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_client(url: str, user: str | None = "alice", timeout: float = 15.0) -> httpx.Client:
    headers = {USER_HEADER: user} if user is not None else {}
    return httpx.Client(base_url=url, headers=headers, timeout=timeout)


def submit(client: httpx.Client, **spec: Any) -> str:
    """``POST /submit`` (seed route); asserts 201 and returns the job id."""
    spec.setdefault("project_id", "it")
    r = client.post("/submit", json=spec)
    assert r.status_code == 201, f"POST /submit {spec!r}: {r.status_code} {r.text}"
    return str(r.json()["job_id"])


def create(client: httpx.Client, **spec: Any) -> dict[str, Any]:
    """``POST /v1/jobs``; asserts 201 and returns the job object."""
    spec.setdefault("project_id", "it")
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 201, f"POST /v1/jobs {spec!r}: {r.status_code} {r.text}"
    body: dict[str, Any] = r.json()
    return body


def get_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, f"GET /v1/jobs/{job_id}: {r.status_code} {r.text}"
    body: dict[str, Any] = r.json()
    return body


def get_runs(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """``GET /v1/jobs/{id}/runs`` items (newest first, as the server orders them)."""
    r = client.get(f"/v1/jobs/{job_id}/runs")
    assert r.status_code == 200, f"GET /v1/jobs/{job_id}/runs: {r.status_code} {r.text}"
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def list_jobs(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """All of the caller's jobs through ``GET /v1/jobs``, following cursors."""
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, "limit": params.get("limit", 1000)}
        if cursor:
            query["cursor"] = cursor
        r = client.get("/v1/jobs", params=query)
        assert r.status_code == 200, f"GET /v1/jobs: {r.status_code} {r.text}"
        body = r.json()
        out.extend(body["items"])
        cursor = body.get("next_cursor")
        if not cursor or not body["items"]:
            return out
    raise AssertionError("GET /v1/jobs: cursor pagination did not end")


def wait_job_status(
    client: httpx.Client, job_id: str, statuses: Iterable[str], timeout: float
) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{id}`` until its status is one of ``statuses``; return the job."""
    wanted = set(statuses)
    job = wait_for(lambda: _job_if(client, job_id, wanted), timeout)
    if job:
        return job
    last = get_job(client, job_id)
    raise AssertionError(
        f"job {job_id} did not reach {sorted(wanted)} in {timeout}s; last: {last}; "
        f"runs: {get_runs(client, job_id)}"
    )


def _job_if(client: httpx.Client, job_id: str, wanted: set[str]) -> dict[str, Any] | None:
    job = get_job(client, job_id)
    return job if job["status"] in wanted else None


def wait_runs(
    client: httpx.Client,
    job_id: str,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    what: str = "condition",
) -> list[dict[str, Any]]:
    """Poll the job's runs until ``predicate(runs)``; return them (or fail with the last seen)."""
    last: list[list[dict[str, Any]]] = [[]]

    def check() -> bool:
        last[0] = get_runs(client, job_id)
        return predicate(last[0])

    if wait_for(check, timeout):
        return last[0]
    raise AssertionError(f"job {job_id}: runs never met {what} in {timeout}s; last: {last[0]}")


def completed(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r["status"] == "COMPLETED"]


def by_attempt(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(runs, key=lambda r: (r["scheduled_for"], r["attempt"]))


def assert_error(
    r: httpx.Response, status: int, code: str | None = None, field: str | None = None
) -> dict[str, Any]:
    """Assert a JSON error response ``{"error": {code, message, field}}``; return the error."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error: dict[str, Any] = body["error"]
    assert isinstance(error.get("message"), str) and error["message"].strip(), error
    if code is not None:
        assert error.get("code") == code, error
    if field is not None:
        assert error.get("field") == field, error
    return error


# -- processes ----------------------------------------------------------------------


def read_pids(path: Path) -> list[int]:
    """Pids written one per line to ``path`` (empty if it does not exist yet)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [int(line) for line in text.split() if line.strip().isdigit()]


def unique_sleep_seconds() -> str:
    """A ``sleep`` argument (about 300 s) unique to one test, to find its processes."""
    return f"300.{uuid.uuid4().int % 10**6:06d}"


class Guard:
    """A fresh user plus a snapshot of `jobs_created_total`, to prove nothing was stored."""

    def __init__(self, server: ServerHandle) -> None:
        self.server = server
        self.user = new_user("guard")
        self.client = make_client(server.url, self.user)
        self.created = metric_sum(scrape(server.url), "jobs_created_total")

    def assert_nothing_stored(self) -> None:
        assert list_jobs(self.client) == [], "a rejected request stored a job"
        r = self.client.get("/jobs")
        assert r.status_code == 200 and r.json() == [], r.text
        after = metric_sum(scrape(self.server.url), "jobs_created_total")
        assert after == self.created, f"jobs_created_total moved {self.created} -> {after}"
