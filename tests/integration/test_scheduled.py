"""A job scheduled 3 s ahead with `next_fire_at` fires on time, not before."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from chronoq.domain.clock import format_rfc3339
from tests.support.times import parse_ts, utcnow

from .helpers import completed, get_runs, make_client, new_user, wait_job_status, wait_runs

if TYPE_CHECKING:
    from .conftest import ServerHandle


def test_scheduled_job_fires_at_next_fire_at(server: ServerHandle) -> None:
    with make_client(server.url, new_user("sched")) as api:
        fire_at = utcnow() + timedelta(seconds=3)
        r = api.post(
            "/submit",
            json={
                "project_id": "sched",
                "payload": "scheduled-hello",
                "next_fire_at": format_rfc3339(fire_at),
            },
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]

        job = api.get("/job", params={"id": job_id}).json()
        assert job["status"] == "PENDING"
        assert abs(parse_ts(job["next_fire_at"]) - fire_at) < timedelta(milliseconds=1), job
        if utcnow() < fire_at - timedelta(milliseconds=500):
            early = get_runs(api, job_id)
            assert all(r["started_at"] is None for r in early), f"started early: {early}"

        runs = wait_runs(api, job_id, lambda rs: bool(completed(rs)), 10, "a COMPLETED run")
        assert len(runs) == 1, runs
        run = runs[0]
        assert run["output"] == "Success: scheduled-hello"
        scheduled = parse_ts(run["scheduled_for"])
        started = parse_ts(run["started_at"])
        assert abs(scheduled - fire_at) < timedelta(milliseconds=1), (run, fire_at)
        assert started >= fire_at - timedelta(milliseconds=1), f"started early: {run}"
        assert started - fire_at < timedelta(seconds=1), f"started late: {run}"
        wait_job_status(api, job_id, {"COMPLETED"}, 5)


def test_next_fire_at_with_an_offset_is_understood(server: ServerHandle) -> None:
    from datetime import timezone

    with make_client(server.url, new_user("offset")) as api:
        fire_at = utcnow() + timedelta(seconds=1)
        local = fire_at.astimezone(timezone(timedelta(hours=5, minutes=30)))
        text = local.isoformat(timespec="milliseconds")
        assert text.endswith("+05:30")
        r = api.post("/v1/jobs", json={"project_id": "p", "payload": "x", "next_fire_at": text})
        assert r.status_code == 201, r.text
        job = r.json()
        assert abs(parse_ts(job["next_fire_at"]) - fire_at) < timedelta(milliseconds=1), job
        runs = wait_runs(api, job["job_id"], lambda rs: bool(completed(rs)), 10, "COMPLETED")
        assert parse_ts(runs[0]["started_at"]) >= fire_at - timedelta(milliseconds=1)


def test_past_next_fire_at_runs_now(server: ServerHandle) -> None:
    with make_client(server.url, new_user("past")) as api:
        past = utcnow() - timedelta(hours=1)
        job = api.post(
            "/v1/jobs",
            json={"project_id": "p", "payload": "late", "next_fire_at": format_rfc3339(past)},
        )
        assert job.status_code == 201, job.text
        job_id = job.json()["job_id"]
        runs = wait_runs(api, job_id, lambda rs: bool(completed(rs)), 10, "COMPLETED")
        assert len(runs) == 1
        assert runs[0]["output"] == "Success: late"
