"""100 jobs from 10 concurrent submitters all complete, each exactly once."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from tests.support.waiting import wait_for

from .helpers import get_runs, list_jobs, make_client, new_user

if TYPE_CHECKING:
    from .conftest import ServerHandle

SUBMITTERS = 10
PER_SUBMITTER = 10


def test_100_jobs_from_10_concurrent_submitters(server: ServerHandle) -> None:
    user = new_user("load")
    project = f"load-{uuid.uuid4().hex[:8]}"

    def submitter(n: int) -> list[tuple[str, str]]:
        out = []
        with make_client(server.url, user) as api:
            for i in range(PER_SUBMITTER):
                payload = f"load {n}-{i}"
                r = api.post("/submit", json={"project_id": project, "payload": payload})
                assert r.status_code == 201, r.text
                out.append((r.json()["job_id"], payload))
        return out

    with ThreadPoolExecutor(SUBMITTERS) as pool:
        results = [f.result() for f in [pool.submit(submitter, n) for n in range(SUBMITTERS)]]
    submitted = dict(pair for batch in results for pair in batch)
    assert len(submitted) == SUBMITTERS * PER_SUBMITTER, "job ids must be unique"

    with make_client(server.url, user) as api:

        def all_completed() -> list[dict]:  # type: ignore[type-arg]
            return [j for j in list_jobs(api, project_id=project) if j["status"] == "COMPLETED"]

        done = wait_for(lambda: len(all_completed()) == len(submitted), 30, interval=0.2)
        jobs = list_jobs(api, project_id=project)
        assert done, {j["status"] for j in jobs}
        assert {j["job_id"] for j in jobs} == set(submitted)
        for job_id, payload in submitted.items():
            runs = get_runs(api, job_id)
            assert len(runs) == 1, runs
            assert runs[0]["status"] == "COMPLETED"
            assert runs[0]["output"] == f"Success: {payload}"
