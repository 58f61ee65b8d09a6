"""Queues, priorities and concurrency limits against a running ``chronoq up`` (issue 9
items 8 and 9): a worker serves only its ``--queues``, takes ready runs highest priority
first, and holds ``--queue-limit``; every bad queue or priority is a 400 naming the field
and stores nothing. SQLite, real time, bounded polls; the rules themselves are the
contract tests' (tests/contract/test_queues_priorities.py)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from chronoq import Client
from chronoq.cli.main import main
from chronoq.errors import ValidationError
from tests.support.times import parse_ts
from tests.support.waiting import wait_for

from .helpers import Guard, assert_error, create, get_job, get_runs, make_client, new_user

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerFactory, ServerHandle

pytestmark = pytest.mark.slow
OK = {"project_id": "p", "payload": "x"}


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> ServerHandle:
    """One worker slot, serving queues ``fast`` and ``bulk`` only."""
    return module_server_factory("--queues", "fast,bulk", "--worker-concurrency", "1")


@pytest.fixture
def api(server: ServerHandle) -> Iterator[httpx.Client]:
    with make_client(server.url, new_user("q")) as client:
        yield client


def _started(api: httpx.Client, job_id: str) -> dict[str, Any] | None:
    runs = get_runs(api, job_id)
    return runs[0] if runs and runs[0]["started_at"] else None


def _wait_done(api: httpx.Client, job_ids: list[str], timeout: float = 30) -> None:
    def done() -> bool:
        return all(get_job(api, j)["status"] == "COMPLETED" for j in job_ids)

    assert wait_for(done, timeout), [get_runs(api, j) for j in job_ids]


def test_a_worker_serves_its_queues_highest_priority_first(api: httpx.Client) -> None:
    elsewhere = create(api, payload="echo never", queue="other", priority=1000)
    blocker = create(api, payload="sleep:2s", queue="fast")
    assert wait_for(lambda: _started(api, blocker["job_id"]) is not None, 15)
    # While the one slot is busy, three runs of "bulk" become ready.
    waiting = {p: create(api, payload="sleep:10ms", queue="bulk", priority=p) for p in (1, 10, 5)}
    assert (waiting[10]["queue"], waiting[10]["priority"]) == ("bulk", 10)
    assert wait_for(lambda: all(get_runs(api, j["job_id"]) for j in waiting.values()), 10)
    assert _started(api, blocker["job_id"])["completed_at"] is None  # type: ignore[index]
    _wait_done(api, [blocker["job_id"], *(j["job_id"] for j in waiting.values())])
    starts = {p: parse_ts(get_runs(api, j["job_id"])[0]["started_at"]) for p, j in waiting.items()}
    assert starts[10] < starts[5] < starts[1], starts
    (run,) = get_runs(api, waiting[5]["job_id"])
    assert (run["queue"], run["priority"]) == ("bulk", 5)
    # The job of a queue no worker serves has a run, QUEUED, untouched.
    (stuck,) = get_runs(api, elsewhere["job_id"])
    assert (stuck["status"], stuck["queue"], stuck["started_at"]) == ("QUEUED", "other", None)


def test_a_change_moves_the_next_runs_to_another_queue(api: httpx.Client) -> None:
    job = create(api, payload="echo moved", queue="nowhere", cron_schedule="@every 1s")
    assert wait_for(lambda: len(get_runs(api, job["job_id"])) >= 1, 10)
    r = api.patch(f"/v1/jobs/{job['job_id']}", json={"queue": "fast", "priority": 3})
    assert r.status_code == 200, r.text
    assert (r.json()["queue"], r.json()["priority"]) == ("fast", 3)

    def a_later_run_completed() -> bool:
        return any(
            x["status"] == "COMPLETED" and x["queue"] == "fast"
            for x in get_runs(api, job["job_id"])
        )

    assert wait_for(a_later_run_completed, 15), get_runs(api, job["job_id"])
    api.post(f"/v1/jobs/{job['job_id']}:pause")
    earliest = min(get_runs(api, job["job_id"]), key=lambda x: x["scheduled_for"])
    assert (earliest["queue"], earliest["status"]) == ("nowhere", "QUEUED")


def test_a_queue_limit_holds_while_other_queues_go_on(server_factory: ServerFactory) -> None:
    server = server_factory("--queue-limit", "gpu=1", "--worker-concurrency", "8")
    with make_client(server.url, new_user("lim")) as api:
        gpu = [create(api, payload="sleep:600ms", queue="gpu")["job_id"] for _ in range(3)]
        cpu = [create(api, payload="sleep:600ms")["job_id"] for _ in range(2)]
        _wait_done(api, gpu + cpu)
        spans = sorted(
            (parse_ts(run["started_at"]), parse_ts(run["completed_at"]))
            for run in (get_runs(api, j)[0] for j in gpu)
        )
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans  # one at a time
        cpu_spans = [
            (parse_ts(run["started_at"]), parse_ts(run["completed_at"]))
            for run in (get_runs(api, j)[0] for j in cpu)
        ]
        assert cpu_spans[0][0] < spans[-1][0], (cpu_spans, spans)  # not behind the gpu queue


# -- field errors ---------------------------------------------------------------------------

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("queue-empty", {"queue": ""}, "queue"),
    ("queue-space", {"queue": "a b"}, "queue"),
    ("queue-slash", {"queue": "a/b"}, "queue"),
    ("queue-65", {"queue": "q" * 65}, "queue"),
    ("queue-huge", {"queue": "q" * 200_000}, "queue"),
    ("queue-nul", {"queue": "a\x00b"}, "queue"),
    ("queue-unicode", {"queue": "é"}, "queue"),
    ("queue-number", {"queue": 5}, "queue"),
    ("priority-high", {"priority": 1001}, "priority"),
    ("priority-low", {"priority": -1001}, "priority"),
    ("priority-float", {"priority": 1.5}, "priority"),
    ("priority-string", {"priority": "1"}, "priority"),
    ("priority-bool", {"priority": True}, "priority"),
    ("priority-huge", {"priority": 1e308}, "priority"),
]


@pytest.mark.parametrize("route", ["/submit", "/v1/jobs", "/v1/jobs:batch"])
@pytest.mark.parametrize(("extra", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_queue_or_priority_is_a_400_naming_it(
    guard: Guard, route: str, extra: dict[str, Any], field: str
) -> None:
    spec = {**OK, **extra}
    batch = route.endswith(":batch")
    body = {"jobs": [OK, spec]} if batch else spec
    r = guard.client.post(route, json=body)
    assert_error(r, 400, "validation_error", f"jobs[1].{field}" if batch else field)
    guard.assert_nothing_stored()


@pytest.mark.parametrize("raw", [b'"\\udc80"', b'"a\xffb"'], ids=["lone-surrogate", "bad-utf8"])
def test_a_queue_that_is_not_text_is_a_400(guard: Guard, raw: bytes) -> None:
    body = b'{"project_id": "p", "payload": "x", "queue": ' + raw + b"}"
    r = guard.client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    error = assert_error(r, 400)
    assert error.get("field") in ("queue", None), error  # bad UTF-8: the body is not JSON
    guard.assert_nothing_stored()


@pytest.mark.parametrize(("extra", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_change_is_a_400_and_changes_nothing(
    api: httpx.Client, extra: dict[str, Any], field: str
) -> None:
    job = create(api, payload="echo x", queue="nowhere", priority=2, cron_schedule="@daily")
    r = api.patch(f"/v1/jobs/{job['job_id']}", json=extra)
    assert_error(r, 400, "validation_error", field)
    after = get_job(api, job["job_id"])
    assert (after["queue"], after["priority"], after["updated_at"]) == (
        "nowhere",
        2,
        job["updated_at"],
    )


def test_defaults_and_a_reset(api: httpx.Client) -> None:
    job = create(api, payload="echo x", cron_schedule="@daily")
    assert (job["queue"], job["priority"]) == ("default", 0)
    r = api.patch(f"/v1/jobs/{job['job_id']}", json={"queue": "x.y-z_1", "priority": -1000})
    assert (r.json()["queue"], r.json()["priority"]) == ("x.y-z_1", -1000)
    r = api.patch(f"/v1/jobs/{job['job_id']}", json={"queue": None, "priority": None})
    assert (r.json()["queue"], r.json()["priority"]) == ("default", 0)


def test_the_client_and_the_cli_set_and_clear_queue_and_priority(server: ServerHandle) -> None:
    user = new_user("qcli")
    with Client(server.url, user_id=user) as client:
        job = client.submit("p", "x", cron_schedule="@daily", queue="reports", priority=7)
        assert (job["queue"], job["priority"]) == ("reports", 7)
        batch = client.submit_batch([{"project_id": "p", "payload": "y", "queue": "b"}])
        assert (batch[0]["queue"], batch[0]["priority"]) == ("b", 0)
        with pytest.raises(ValidationError) as bad:
            client.submit("p", "x", queue="no spaces")
        assert bad.value.field == "queue"
        changed = client.update(job["job_id"], priority=-2)
        assert (changed["queue"], changed["priority"]) == ("reports", -2)

    def cli(*args: str) -> Any:
        result = CliRunner().invoke(main, [*args, "--url", server.url, "--user", user, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    made = cli("submit", "echo hi", "-p", "p", "--cron", "@daily", "--queue", "q1", "--priority",
               "1000")  # fmt: skip
    assert (made["queue"], made["priority"]) == ("q1", 1000)
    edited = cli("edit", made["job_id"], "--queue", "q2")
    assert (edited["queue"], edited["priority"]) == ("q2", 1000)
    cleared = cli("edit", made["job_id"], "--clear", "queue", "--clear", "priority")
    assert (cleared["queue"], cleared["priority"]) == ("default", 0)
    refused = CliRunner().invoke(
        main, ["submit", "x", "-p", "p", "--priority", "1001", "--url", server.url]
    )
    assert refused.exit_code == 2  # a usage error, before any request
