"""An immediate job end to end through the seed routes: submit, look up, run, list."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from tests.support.times import parse_ts, utcnow

from .helpers import (
    JOB_FIELDS,
    RUN_FIELDS,
    completed,
    get_job,
    make_client,
    new_user,
    wait_job_status,
    wait_runs,
)
from .store_params import store_server  # noqa: F401 - fixture "server": SQLite and PostgreSQL

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerHandle


def test_submit_answers_the_seed_body(api: httpx.Client) -> None:
    payload = f"hello-{uuid.uuid4()}"
    r = api.post("/submit", json={"project_id": "demo", "payload": payload})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"job_id", "status", "message"}, body
    assert body["status"] == "Submitted"
    assert body["message"] == "Job submitted successfully"
    assert str(uuid.UUID(body["job_id"])) == body["job_id"]


def test_immediate_job_runs_once_and_is_listed(server: ServerHandle) -> None:
    user = new_user("imm")
    payload = f"Hello, Distributed Scheduler! {uuid.uuid4()}"
    before = utcnow()
    with make_client(server.url, user) as api:
        r = api.post(
            "/submit", json={"project_id": "demo-project", "payload": payload, "max_retries": 3}
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]

        # GET /job (seed): the fields it promises, with what was submitted.
        r = api.get("/job", params={"id": job_id})
        assert r.status_code == 200, r.text
        seed_job = r.json()
        assert {"job_id", "project_id", "payload", "status", "next_fire_at", "created_at"} <= set(
            seed_job
        ), seed_job
        assert seed_job["job_id"] == job_id
        assert seed_job["project_id"] == "demo-project"
        assert seed_job["payload"] == payload
        assert seed_job["status"] in {"PENDING", "RUNNING", "COMPLETED"}
        assert seed_job.get("cron_schedule") is None
        created = parse_ts(seed_job["created_at"])
        assert before - timedelta(seconds=1) <= created <= utcnow() + timedelta(seconds=1)

        runs = wait_runs(api, job_id, lambda rs: bool(completed(rs)), 10, "a COMPLETED run")
        assert len(runs) == 1, runs
        run = runs[0]
        assert set(run) >= RUN_FIELDS, sorted(RUN_FIELDS - set(run))
        assert run["job_id"] == job_id
        assert run["attempt"] == 1
        assert run["output"] == f"Success: {payload}"
        assert run["error_message"] in (None, "")
        assert run["worker_id"]
        uuid.UUID(run["run_id"])
        scheduled = parse_ts(run["scheduled_for"])
        triggered = parse_ts(run["triggered_at"])
        started = parse_ts(run["started_at"])
        finished = parse_ts(run["completed_at"])
        assert abs(scheduled - created) < timedelta(seconds=1)
        assert scheduled <= started + timedelta(milliseconds=1)
        assert triggered <= started + timedelta(milliseconds=1)
        assert started <= finished
        assert started - scheduled < timedelta(seconds=2), "immediate job started late"

        job = wait_job_status(api, job_id, {"COMPLETED"}, 5)
        assert set(job) >= JOB_FIELDS, sorted(JOB_FIELDS - set(job))
        assert job["payload"] == payload
        assert job["max_retries"] == 3
        assert job["cron_schedule"] is None
        assert parse_ts(job["updated_at"]) >= parse_ts(job["created_at"])
        r = api.get("/job", params={"id": job_id})
        assert r.json()["status"] == "COMPLETED"

        # GET /jobs (seed list) shows it with the four seed fields.
        r = api.get("/jobs")
        assert r.status_code == 200, r.text
        listed = r.json()
        assert isinstance(listed, list)
        mine = [j for j in listed if j["job_id"] == job_id]
        assert len(mine) == 1, listed
        assert {"job_id", "status", "next_fire_at", "created_at"} <= set(mine[0])
        assert mine[0]["status"] == "COMPLETED"
        assert len(listed) == 1, "a fresh user sees exactly their one job"

        # GET /v1/jobs lists it too.
        r = api.get("/v1/jobs")
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert [j["job_id"] for j in items] == [job_id]
        assert get_job(api, job_id)["status"] == "COMPLETED"


def test_v1_create_returns_the_job_object(server: ServerHandle) -> None:
    with make_client(server.url, new_user("v1")) as api:
        r = api.post("/v1/jobs", json={"project_id": "p1", "payload": "v1-echo"})
        assert r.status_code == 201, r.text
        job = r.json()
        assert set(job) >= JOB_FIELDS, sorted(JOB_FIELDS - set(job))
        assert job["project_id"] == "p1"
        assert job["payload"] == "v1-echo"
        assert job["max_retries"] == 0
        assert job["cron_schedule"] is None and job["timezone"] is None
        # As accepted, even though its first fire is claimed in the insert itself
        # (domain.fire_now): pending, due at its creation.
        assert job["status"] == "PENDING"
        assert job["next_fire_at"] == job["created_at"]
        runs = wait_runs(api, job["job_id"], lambda rs: bool(completed(rs)), 10, "COMPLETED")
        assert runs[0]["output"] == "Success: v1-echo"
        assert runs[0]["scheduled_for"] == job["next_fire_at"]


def test_list_is_oldest_first_with_a_working_cursor(server: ServerHandle) -> None:
    with make_client(server.url, new_user("page")) as api:
        ids = []
        for i in range(5):
            r = api.post("/v1/jobs", json={"project_id": "pg", "payload": f"page-{i}"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["job_id"])
        seen = []
        cursor = None
        for _ in range(10):
            params: dict[str, object] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            r = api.get("/v1/jobs", params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            assert len(body["items"]) <= 2
            seen.extend(j["job_id"] for j in body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == ids
        r = api.get("/v1/jobs", params={"project_id": "nope"})
        assert r.json()["items"] == []
