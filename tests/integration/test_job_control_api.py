"""Job control against a running server (issue 9.1): schedule policies on submit,
``:pause``, ``:resume``, ``:trigger``, ``PATCH``, ``DELETE ?purge=true`` and the fire
ledger ``GET /v1/jobs/{id}/fires`` — each happy path and its errors, on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from chronoq.domain.clock import format_rfc3339
from tests.support.times import at, parse_ts, utcnow
from tests.support.waiting import wait_for

from .helpers import (
    assert_error,
    completed,
    create,
    get_job,
    get_runs,
    make_client,
    new_user,
    wait_job_status,
    wait_runs,
)
from .store_params import store_server  # noqa: F401 - fixture "server": SQLite and PostgreSQL

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerFactory, ServerHandle


def test_every_route_is_documented(api: httpx.Client) -> None:
    """Each control operation is in /openapi.json, in the document of this auth mode."""
    paths = api.get("/openapi.json").json()["paths"]
    wanted = {
        "/v1/jobs/{job_id}:pause": "post", "/v1/jobs/{job_id}:resume": "post",
        "/v1/jobs/{job_id}:trigger": "post", "/v1/jobs/{job_id}/fires": "get",
    }  # fmt: skip
    for path, method in wanted.items():
        assert method in paths[path], path
    assert {"get", "patch", "delete"} <= set(paths["/v1/jobs/{job_id}"])
    purge = [p["name"] for p in paths["/v1/jobs/{job_id}"]["delete"]["parameters"]]
    assert "purge" in purge
    headers = [p["name"] for p in paths["/v1/jobs"]["post"]["parameters"]]
    assert "Idempotency-Key" in headers


POLICIES = {
    "overlap": "buffer_one",
    "misfire": "run_all",
    "catch_up_window_seconds": 600,
    "start_deadline_seconds": 30,
    "jitter_seconds": 0.5,
    "max_fires": 1000,
}
DEFAULTS = {
    "overlap": "skip",
    "misfire": "run_once",
    "catch_up_window_seconds": None,
    "start_deadline_seconds": None,
    "jitter_seconds": 0.0,
    "start_at": None,
    "end_at": None,
    "max_fires": None,
    "dst_gap": "auto",
    "dst_repeat": "auto",
    "fire_count": 0,
    "paused_fire_at": None,
    "idempotency_key": None,
}


@pytest.fixture
def api(server: ServerHandle) -> Iterator[httpx.Client]:
    with make_client(server.url, new_user("ctl")) as client:
        yield client


def _hourly(api: httpx.Client, **extra: Any) -> dict[str, Any]:
    return create(api, payload="tick", cron_schedule="0 * * * *", **extra)


# -- policies on submit ---------------------------------------------------------------


def test_submit_carries_policies_and_defaults(api: httpx.Client) -> None:
    plain = _hourly(api)
    assert {k: plain[k] for k in DEFAULTS} == DEFAULTS
    start, end = utcnow() + timedelta(days=1), utcnow() + timedelta(days=30)
    job = _hourly(api, **POLICIES, start_at=format_rfc3339(start), end_at=format_rfc3339(end))
    assert {k: job[k] for k in POLICIES} == POLICIES
    assert parse_ts(job["start_at"]) == start and parse_ts(job["end_at"]) == end
    assert parse_ts(job["next_fire_at"]) >= start  # the first fire honours start_at
    assert get_job(api, job["job_id"]) == job
    r = api.post("/v1/jobs:batch", json={"jobs": [
        {"project_id": "b", "payload": "x", "cron_schedule": "@every 1h", "overlap": "allow"},
        {"project_id": "b", "payload": "y", "misfire": "skip", "next_fire_at": at(3600)},
    ]})  # fmt: skip
    assert r.status_code == 201, r.text
    items = r.json()["items"]
    assert (items[0]["overlap"], items[1]["misfire"]) == ("allow", "skip")


def test_dst_policies_are_kept_and_changed(api: httpx.Client) -> None:
    job = create(api, payload="x", cron_schedule="30 2 * * *", timezone="America/New_York",
                 dst_gap="skip", dst_repeat="both")  # fmt: skip
    assert (job["dst_gap"], job["dst_repeat"]) == ("skip", "both")
    r = api.patch(f"/v1/jobs/{job['job_id']}", json={"dst_gap": "shift", "dst_repeat": None})
    assert r.status_code == 200, r.text
    assert (r.json()["dst_gap"], r.json()["dst_repeat"]) == ("shift", "auto")
    utc = _hourly(api)
    assert_error(api.patch(f"/v1/jobs/{utc['job_id']}", json={"dst_gap": "skip"}), 400,
                 field="dst_gap")  # fmt: skip
    r = api.patch(f"/v1/jobs/{utc['job_id']}",
                  json={"dst_gap": "skip", "timezone": "Europe/Berlin"})  # fmt: skip
    assert r.status_code == 200 and r.json()["dst_gap"] == "skip", r.text


def test_one_shot_start_at_is_its_time(api: httpx.Client) -> None:
    start = utcnow() + timedelta(hours=2)
    job = create(api, payload="later", start_at=format_rfc3339(start))
    assert parse_ts(job["next_fire_at"]) == start


BAD_FIELDS = [
    ({"overlap": "sometimes"}, "overlap"),
    ({"overlap": "skip", "cron_schedule": None}, "overlap"),  # one-shot
    ({"misfire": "never"}, "misfire"),
    ({"jitter_seconds": -1}, "jitter_seconds"),
    ({"jitter_seconds": 86401}, "jitter_seconds"),
    ({"start_deadline_seconds": -0.5}, "start_deadline_seconds"),
    ({"catch_up_window_seconds": 60}, "catch_up_window_seconds"),  # misfire run_once
    ({"catch_up_window_seconds": -1, "misfire": "run_all"}, "catch_up_window_seconds"),
    ({"max_fires": 0}, "max_fires"),
    ({"max_fires": 2.5}, "max_fires"),
    ({"max_fires": "3"}, "max_fires"),
    ({"start_at": "tomorrow"}, "start_at"),
    ({"end_at": "2030-01-01T00:00:00"}, "end_at"),  # no offset
    ({"start_at": "2031-01-01T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}, "end_at"),
    ({"end_at": "2001-01-01T00:00:00Z"}, "end_at"),  # no fire left
    ({"start_at": "2031-01-01T00:00:00Z", "next_fire_at": "2031-01-01T00:00:00Z"}, "start_at"),
    ({"dst_gap": "sometimes", "timezone": "Europe/Berlin"}, "dst_gap"),
    ({"dst_repeat": "twice", "timezone": "Europe/Berlin"}, "dst_repeat"),
    ({"dst_gap": "skip"}, "dst_gap"),  # no timezone: UTC has no DST
    ({"dst_repeat": "both", "timezone": "Europe/Berlin", "cron_schedule": None}, "dst_repeat"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"idempotency_key": "a\u0000b"}, "idempotency_key"),
    ({"idempotency_key": "k" * 256}, "idempotency_key"),
]


@pytest.mark.parametrize(("extra", "field"), BAD_FIELDS)
def test_each_bad_policy_field_is_a_400_naming_it(
    api: httpx.Client, extra: dict[str, Any], field: str
) -> None:
    body = {"project_id": "p", "payload": "x", "cron_schedule": "@every 1h", **extra}
    if "cron_schedule" in extra and extra["cron_schedule"] is None:
        del body["cron_schedule"]
        body.pop("timezone", None)
    assert_error(api.post("/v1/jobs", json=body), 400, field=field)
    assert_error(api.post("/submit", json=body), 400, field=field)
    batch = {"jobs": [{"project_id": "p", "payload": "ok"}, body]}
    assert_error(api.post("/v1/jobs:batch", json=batch), 400, field=f"jobs[1].{field}")


@pytest.mark.parametrize("field", ["overlap", "end_at", "max_fires", "dst_gap", "dst_repeat"])
def test_recurring_only_fields_say_why_on_a_one_shot_job(api: httpx.Client, field: str) -> None:
    value = {"overlap": "allow", "end_at": at(7200), "max_fires": 3, "dst_gap": "skip",
             "dst_repeat": "both"}[field]  # fmt: skip
    error = assert_error(
        api.post("/v1/jobs", json={"project_id": "p", "payload": "x", field: value}), 400,
        field=field,
    )  # fmt: skip
    assert "recurring" in error["message"]


# -- pause, resume, trigger -------------------------------------------------------------


def test_pause_and_resume_hold_and_restore_the_next_fire(api: httpx.Client) -> None:
    job = _hourly(api)
    r = api.post(f"/v1/jobs/{job['job_id']}:pause")
    assert r.status_code == 200, r.text
    paused = r.json()
    assert paused["status"] == "PAUSED" and paused["next_fire_at"] is None
    assert paused["paused_fire_at"] == job["next_fire_at"]
    again = api.post(f"/v1/jobs/{job['job_id']}:pause")  # already paused: unchanged
    assert again.status_code == 200 and again.json()["status"] == "PAUSED"
    r = api.post(f"/v1/jobs/{job['job_id']}:resume")
    assert r.status_code == 200, r.text
    resumed = r.json()
    assert resumed["status"] == "PENDING" and resumed["paused_fire_at"] is None
    assert resumed["next_fire_at"] == job["next_fire_at"]  # its fire had not come yet
    assert_error(api.post(f"/v1/jobs/{job['job_id']}:resume?catch_up=perhaps"), 400,
                 field="catch_up")  # fmt: skip


def test_trigger_runs_now_and_refuses_one_shot_and_finished_jobs(api: httpx.Client) -> None:
    job = _hourly(api)
    r = api.post(f"/v1/jobs/{job['job_id']}:trigger")
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["manual"] is True and run["job_id"] == job["job_id"] and run["attempt"] == 1
    runs = wait_runs(api, job["job_id"], lambda rs: bool(completed(rs)), 15, "manual run done")
    assert runs[0]["run_id"] == run["run_id"] and runs[0]["manual"] is True
    assert get_job(api, job["job_id"])["next_fire_at"] == job["next_fire_at"]  # not moved
    one_shot = create(api, payload="once", next_fire_at=at(3600))
    assert_error(api.post(f"/v1/jobs/{one_shot['job_id']}:trigger"), 409, "conflict")
    assert api.delete(f"/v1/jobs/{job['job_id']}").status_code == 200
    assert_error(api.post(f"/v1/jobs/{job['job_id']}:trigger"), 409, "conflict")


def test_control_paths_answer_405_to_other_methods(api: httpx.Client) -> None:
    job = _hourly(api)
    for verb in ("pause", "resume", "trigger"):
        r = api.get(f"/v1/jobs/{job['job_id']}:{verb}")
        assert r.status_code == 405 and r.headers["allow"] == "POST", r.text
    assert api.post(f"/v1/jobs/{job['job_id']}:explode").status_code == 404
    assert_error(api.post("/v1/jobs/not-a-uuid:pause"), 400, "invalid_job_id")


# -- PATCH ------------------------------------------------------------------------------


def test_patch_changes_schedule_policies_and_limits(api: httpx.Client) -> None:
    job = _hourly(api, overlap="allow", jitter_seconds=5)
    r = api.patch(f"/v1/jobs/{job['job_id']}", json={
        "cron_schedule": "30 4 * * *", "timezone": "Europe/Berlin", "misfire": "skip",
        "max_retries": 3, "timeout_seconds": 12.5, "jitter_seconds": None,
    })  # fmt: skip
    assert r.status_code == 200, r.text
    changed = r.json()
    assert (changed["cron_schedule"], changed["timezone"]) == ("30 4 * * *", "Europe/Berlin")
    assert (changed["max_retries"], changed["timeout_seconds"]) == (3, 12.5)
    # a partial policy change merges: overlap stays, jitter reset to its default
    assert (changed["overlap"], changed["misfire"], changed["jitter_seconds"]) == (
        "allow", "skip", 0.0,
    )  # fmt: skip
    nxt = parse_ts(changed["next_fire_at"])
    assert nxt != parse_ts(job["next_fire_at"]) and nxt > utcnow()
    assert get_job(api, job["job_id"]) == changed
    r = api.patch(f"/v1/jobs/{job['job_id']}", json={"timeout_seconds": None})
    assert r.status_code == 200 and r.json()["timeout_seconds"] is None


def _blobs(server: ServerHandle, job_id: str) -> list[str]:
    """The payload objects of this job in the server's blob folder."""
    folder = server.data_dir / "blobs" / "payloads"
    return sorted(p.name for p in folder.glob(f"{job_id}*") if not p.name.endswith(".tmp"))


def test_patch_moves_a_one_shot_job_and_replaces_a_big_payload(
    api: httpx.Client, server: ServerHandle
) -> None:
    job = create(api, payload="A" * 3000, next_fire_at=at(3600))
    assert _blobs(server, job["job_id"]) == [job["job_id"]]
    big = "B" * 5000  # over the 1 KiB offload threshold
    later = at(7200)
    r = api.patch(f"/v1/jobs/{job['job_id']}", json={"next_fire_at": later, "payload": big})
    assert r.status_code == 200, r.text
    assert parse_ts(r.json()["next_fire_at"]) == parse_ts(later)
    assert r.json()["payload"] == big and r.json()["payload_offloaded"] is True
    assert get_job(api, job["job_id"])["payload"] == big
    # The new object under a new key; the old one stays for runs claimed before the
    # change, until the leader's orphan sweep (tests/contract/test_blob.py).
    objects = _blobs(server, job["job_id"])
    assert job["job_id"] in objects and len(objects) == 2
    [replaced] = [name for name in objects if name != job["job_id"]]
    assert replaced.startswith(job["job_id"] + ".")
    r = api.patch(f"/v1/jobs/{job['job_id']}", json={"payload": "small again"})
    assert r.json()["payload"] == "small again" and r.json()["payload_offloaded"] is False
    assert get_job(api, job["job_id"])["payload"] == "small again"


PATCH_ERRORS = [
    ({}, 400, None),
    ({"next_fire_at": "2031-01-01T00:00:00Z"}, 400, "next_fire_at"),  # recurring job
    ({"cron_schedule": "61 * * * *"}, 400, "cron_schedule"),
    ({"timezone": "Mars/Olympus"}, 400, "timezone"),
    ({"overlap": "maybe"}, 400, "overlap"),
    ({"catch_up_window_seconds": 10}, 400, "catch_up_window_seconds"),
    ({"start_at": "2031-01-01T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}, 400, "end_at"),
    ({"max_retries": -1}, 400, "max_retries"),
    ({"payload": "a\u0000b"}, 400, "payload"),
    ({"status": "COMPLETED"}, 400, "status"),
    ({"cron_schedule": None}, 400, "cron_schedule"),
]


@pytest.mark.parametrize(("body", "status", "field"), PATCH_ERRORS)
def test_patch_errors_name_their_field(
    api: httpx.Client, body: dict[str, Any], status: int, field: str | None
) -> None:
    job = _hourly(api)
    error = assert_error(api.patch(f"/v1/jobs/{job['job_id']}", json=body), status)
    assert error["field"] == field
    assert get_job(api, job["job_id"]) == job  # nothing changed


def test_patch_one_shot_refuses_schedule_fields_and_finished_jobs_409(api: httpx.Client) -> None:
    job = create(api, payload="once", next_fire_at=at(3600))
    for body, field in (
        ({"cron_schedule": "@every 1m"}, "cron_schedule"),
        ({"max_fires": 3}, "max_fires"),
        ({"start_at": at(60)}, "start_at"),
    ):
        assert_error(api.patch(f"/v1/jobs/{job['job_id']}", json=body), 400, field=field)
    assert api.delete(f"/v1/jobs/{job['job_id']}").json()["status"] == "CANCELLED"
    assert_error(api.patch(f"/v1/jobs/{job['job_id']}", json={"max_retries": 1}), 409)


def test_patch_end_at_in_the_past_ends_the_schedule(api: httpx.Client) -> None:
    job = create(api, payload="x", cron_schedule="@every 1h", start_at=at(-7200))
    past = format_rfc3339(utcnow() - timedelta(minutes=1))
    r = api.patch(f"/v1/jobs/{job['job_id']}", json={"end_at": past})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "COMPLETED" and r.json()["next_fire_at"] is None


# -- DELETE, purge -----------------------------------------------------------------------


def test_purge_removes_the_job_and_its_history(api: httpx.Client, server: ServerHandle) -> None:
    job = create(api, payload="P" * 3000)  # offloaded payload, runs now
    wait_job_status(api, job["job_id"], {"COMPLETED"}, 15)
    assert get_runs(api, job["job_id"])
    assert_error(api.delete(f"/v1/jobs/{job['job_id']}?purge=yes"), 400, field="purge")
    r = api.delete(f"/v1/jobs/{job['job_id']}", params={"purge": "true"})
    assert r.status_code == 200 and r.json() == {"job_id": job["job_id"], "purged": True}
    assert _blobs(server, job["job_id"]) == []
    for path in ("", "/runs", "/fires"):
        assert_error(api.get(f"/v1/jobs/{job['job_id']}{path}"), 404, "not_found")
    assert_error(api.delete(f"/v1/jobs/{job['job_id']}?purge=true"), 404, "not_found")


def test_delete_without_purge_still_cancels(api: httpx.Client) -> None:
    job = _hourly(api)
    r = api.delete(f"/v1/jobs/{job['job_id']}", params={"purge": "false"})
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
    assert get_job(api, job["job_id"])["status"] == "CANCELLED"


# -- the fire ledger ---------------------------------------------------------------------


def test_fires_query_errors(api: httpx.Client) -> None:
    job = _hourly(api)
    path = f"/v1/jobs/{job['job_id']}/fires"
    assert api.get(path).json() == {"items": []}
    assert_error(api.get(path, params={"from": "yesterday"}), 400, field="from")
    assert_error(api.get(path, params={"to": "2030-13-01T00:00:00Z"}), 400, field="to")
    assert_error(api.get(path, params={"from": at(60), "to": at(0)}), 400, field="from")
    for limit in ("0", "1001", "x"):
        assert_error(api.get(path, params={"limit": limit}), 400, field="limit")


def test_recurring_job_paused_resumed_triggered_end_to_end(api: httpx.Client) -> None:
    """A per-second job: runs, a pause that skips its fires (one ``paused`` span in the
    ledger), a resume, a manual fire; every nominal fire has one entry, oldest first."""
    started = utcnow()
    job = create(api, payload="tick", cron_schedule="@every 1s")
    job_id = job["job_id"]
    wait_runs(api, job_id, lambda rs: len(completed(rs)) >= 2, 15, "two runs")
    paused = api.post(f"/v1/jobs/{job_id}:pause").json()
    assert paused["status"] in ("PAUSED",), paused
    held = parse_ts(paused["paused_fire_at"])
    wait_for(lambda: utcnow() > held + timedelta(seconds=2.2), 10)  # ≥ 2 fires missed
    resumed = api.post(f"/v1/jobs/{job_id}:resume").json()
    assert resumed["status"] in ("PENDING", "RUNNING") and resumed["paused_fire_at"] is None
    manual = api.post(f"/v1/jobs/{job_id}:trigger").json()

    def ledger() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = api.get(f"/v1/jobs/{job_id}/fires").json()["items"]
        done = any(f["run_id"] == manual["run_id"] and f["outcome"] == "COMPLETED" for f in items)
        return items if done else None

    fires = wait_for(ledger, 15)
    assert fires, "the manual run never completed"
    skips = [f for f in fires if f["outcome"] == "SKIPPED"]
    assert [f["reason"] for f in skips] == ["paused"], fires
    span = skips[0]
    assert parse_ts(span["scheduled_for"]) == held and span["count"] >= 2
    assert span["run_id"] is None and span["manual"] is False
    assert [f["manual"] for f in fires].count(True) == 1
    times = [parse_ts(f["scheduled_for"]) for f in fires]
    assert times == sorted(times) and times[0] >= started - timedelta(seconds=1)
    runs = {f["run_id"] for f in fires if f["run_id"]}
    assert len(runs) == len([f for f in fires if f["outcome"] != "SKIPPED"])  # one entry each
    later = api.get(f"/v1/jobs/{job_id}/fires", params={"from": span["last_scheduled_for"]})
    assert later.json()["items"][0] == span  # a span is listed while it overlaps the window
    assert len(api.get(f"/v1/jobs/{job_id}/fires", params={"limit": 1}).json()["items"]) == 1
    api.delete(f"/v1/jobs/{job_id}")


def test_patch_to_a_shell_payload_needs_shell_permission(server_factory: ServerFactory) -> None:
    no_shell = server_factory("--no-shell")
    with make_client(no_shell.url, new_user("sh")) as client:
        job = create(client, payload="echo", cron_schedule="0 * * * *")
        r = client.patch(f"/v1/jobs/{job['job_id']}", json={"payload": "cmd:id"})
        assert_error(r, 403, "shell_disabled")
        assert get_job(client, job["job_id"])["payload"] == "echo"
