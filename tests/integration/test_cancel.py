"""Cancel: a running shell job is killed; a recurring job stops firing; a cancel sticks."""

from __future__ import annotations

import shlex
from datetime import timedelta
from typing import TYPE_CHECKING

from chronoq.domain.clock import format_rfc3339
from tests.support.processes import pid_alive, pids_with_token
from tests.support.times import utcnow
from tests.support.waiting import stays_false, wait_for

from .helpers import (
    JOB_FIELDS,
    RUN_TERMINAL,
    completed,
    get_job,
    get_runs,
    make_client,
    new_user,
    read_pids,
    submit,
    unique_sleep_seconds,
    wait_runs,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import ServerHandle


def _settled(runs: list[dict]) -> bool:  # type: ignore[type-arg]
    return all(r["status"] not in ("QUEUED", "RUNNING") for r in runs)


def test_cancel_kills_a_running_shell_job(
    server: ServerHandle, tmp_path: Path, proc_sweeper: list[str]
) -> None:
    seconds = unique_sleep_seconds()
    proc_sweeper.append(seconds)
    bg_file = shlex.quote(str(tmp_path / "bg.pid"))
    sh_file = shlex.quote(str(tmp_path / "sh.pid"))
    payload = f"cmd:echo $$ > {sh_file}; sleep {seconds} & echo $! > {bg_file}; wait"
    with make_client(server.url, new_user("cancel")) as api:
        job_id = submit(api, payload=payload)
        assert wait_for(lambda: read_pids(tmp_path / "bg.pid"), 10), "the job never started"
        pids = read_pids(tmp_path / "bg.pid") + wait_for(lambda: read_pids(tmp_path / "sh.pid"), 2)
        assert all(pid_alive(p) for p in pids), "the job's processes should be running"
        running = wait_runs(
            api, job_id, lambda rs: any(r["status"] == "RUNNING" for r in rs), 5, "RUNNING"
        )
        assert len(running) == 1

        r = api.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= JOB_FIELDS, body
        assert body["job_id"] == job_id
        assert body["status"] == "CANCELLED"

        runs = wait_runs(
            api, job_id, lambda rs: rs[0]["status"] in RUN_TERMINAL, 10, "a terminal run"
        )
        assert [r["status"] for r in runs] == ["CANCELLED"], runs
        assert wait_for(lambda: not any(pid_alive(p) for p in pids), 5), (
            f"still alive after cancel: {[p for p in pids if pid_alive(p)]}"
        )
        assert wait_for(lambda: not pids_with_token(seconds), 5), pids_with_token(seconds)

        assert get_job(api, job_id)["status"] == "CANCELLED"
        assert api.get("/job", params={"id": job_id}).json()["status"] == "CANCELLED"
        again = api.delete(f"/v1/jobs/{job_id}")
        assert again.status_code < 500, again.text
        assert get_job(api, job_id)["status"] == "CANCELLED"
        assert [r["status"] for r in get_runs(api, job_id)] == ["CANCELLED"]


def test_cancelled_recurring_job_fires_no_more(server: ServerHandle) -> None:
    with make_client(server.url, new_user("cancel")) as api:
        job_id = submit(api, payload="tick", cron_schedule="@every 1s")
        wait_runs(api, job_id, lambda rs: bool(completed(rs)), 5, "a first COMPLETED run")

        r = api.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "CANCELLED"
        count = len(get_runs(api, job_id))
        runs = wait_runs(api, job_id, _settled, 5, "no QUEUED or RUNNING run")
        assert stays_false(lambda: len(get_runs(api, job_id)) > count, 2.5), get_runs(api, job_id)
        assert len(runs) == count
        assert get_job(api, job_id)["status"] == "CANCELLED"
        assert api.get("/job", params={"id": job_id}).json()["status"] == "CANCELLED"


def test_cancelled_scheduled_job_never_fires(server: ServerHandle) -> None:
    with make_client(server.url, new_user("cancel")) as api:
        fire_at = utcnow() + timedelta(seconds=1)
        job_id = submit(api, payload="never", next_fire_at=format_rfc3339(fire_at))
        r = api.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        assert stays_false(lambda: get_runs(api, job_id), 2.0), get_runs(api, job_id)
        assert get_job(api, job_id)["status"] == "CANCELLED"


def test_cancel_unknown_job_is_404(server: ServerHandle) -> None:
    import uuid

    with make_client(server.url, new_user("cancel")) as api:
        r = api.delete(f"/v1/jobs/{uuid.uuid4()}")
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
