"""Helpers for the end-to-end tests: deadline polls, API shortcuts, time,
Prometheus text and process inspection.

Nothing here sleeps to *wait for* a condition: every wait is a poll bounded
by a deadline (``wait_for``), and the caller asserts on what it returns.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

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


# -- polling -------------------------------------------------------------------


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Call ``predicate`` until it returns something truthy or ``timeout`` passes.

    Returns the last value either way, so the caller asserts on it and the
    failure message shows what was last seen. Always calls at least once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def stays_false(predicate: Callable[[], Any], duration: float, interval: float = 0.05) -> bool:
    """True if ``predicate`` stayed falsy for the whole ``duration`` (checks absence)."""
    return not wait_for(predicate, duration, interval)


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


# -- time ---------------------------------------------------------------------------


def parse_ts(value: str) -> datetime:
    """Parse an RFC 3339 UTC timestamp as the API returns it (with ``Z``)."""
    assert isinstance(value, str) and value.endswith("Z"), f"not RFC 3339 UTC with Z: {value!r}"
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0), value
    return parsed


def rfc3339(when: datetime) -> str:
    """Render an aware datetime as RFC 3339 UTC with millisecond precision and ``Z``."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- Prometheus text ---------------------------------------------------------------

_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>(?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?'
    r"\s+(?P<value>\S+)"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: ``(name, labels, value)``."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparseable metrics line: {line!r}"
        labels = dict(_LABEL.findall(m.group("labels") or ""))
        samples.append((m.group("name"), labels, float(m.group("value"))))
    return samples


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(
        value
        for sample_name, sample_labels, value in parse_metrics(text)
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def scrape(url: str) -> str:
    r = httpx.get(url.rstrip("/") + "/metrics", timeout=10.0)
    assert r.status_code == 200, f"GET /metrics: {r.status_code} {r.text[:300]}"
    return r.text


# -- processes ----------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rindex(")") + 2 :].split()[0]
    return state not in ("Z", "X")


def pids_with_token(token: str) -> list[int]:
    """Live processes whose command line contains ``token`` (never this process)."""
    found = []
    needle = token.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def session_pids(sid: int) -> list[int]:
    """Live processes in session ``sid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields: state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


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
