"""Bounded responses (issue 7.4): one request never costs memory in proportion to what
users stored. A run list carries at most ``LIST_OUTPUT_CHARS`` of each output (flagged
``output_truncated``), the whole output streams from its own endpoint in slices, and a
job list never fetches offloaded payloads from the blob store.

The big case is built straight into the server's SQLite file before it starts (1,000
attempts of one job, 1 MiB of output each: 1 GiB), because running 1,000 shell jobs
would only slow the test down without changing what the API must do with the rows.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from chronoq.adapters.sqlite import SqliteStore
from chronoq.domain.jobs import LIST_OUTPUT_CHARS
from chronoq.domain.states import RunStatus
from tests.contract.helpers import claim_due, claim_runs, make_job, outcome
from tests.support.metrics import metric_sum, scrape

from .helpers import assert_error, create, get_job, make_client, new_user

if TYPE_CHECKING:
    from .conftest import ServerFactory

RUNS = 1000
MIB = 1 << 20
# The worst case for JSON: a control character is escaped as \u0001, six bytes.
OUTPUT = ("\x01" * 1024 + "y" * 1024) * (MIB // 2048)
PAGE_LIMIT = RUNS * (LIST_OUTPUT_CHARS * 6 + 1024)
"""The documented bound of one page of runs (docs/api.md): 6 bytes per character of the
cut output plus under 1 KiB of fields per run."""
RSS_GROWTH_LIMIT = 50 * MIB


async def _seed(db: Path, user: str) -> str:
    """One job with ``RUNS`` finished attempts of 1 MiB output each; its id."""
    now = datetime.now(UTC)
    store = SqliteStore(db, synchronous="OFF")
    await store.start()
    try:
        job = make_job(user_id=user, max_retries=RUNS - 1, next_fire_at=now, created_at=now)
        await store.insert_jobs([job])
        await claim_due(store, now)
        for attempt in range(1, RUNS + 1):
            (claimed,) = await claim_runs(store, "seeder", now)
            last = attempt == RUNS
            status = RunStatus.FAILED if last else RunStatus.RETRY_SCHEDULED
            ended = outcome(
                claimed, status, worker_id="seeder", started_at=now, output=OUTPUT,
                exit_code=1, retry_at=None if last else now,
            )  # fmt: skip
            assert await store.complete_runs([ended]) == [True]
        return job.job_id
    finally:
        await store.close()


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_a_page_of_1000_runs_of_1_mib_stays_bounded(server_factory: ServerFactory) -> None:
    server = server_factory(start=False)
    user = new_user("big-output")
    job_id = asyncio.run(_seed(server.data_dir / "chronoq.db", user))
    server.start()
    assert server.proc is not None
    with make_client(server.url, user, timeout=60) as api:
        assert api.get(f"/v1/jobs/{job_id}/runs", params={"limit": 1}).status_code == 200
        before = _peak_rss(server.proc.pid)  # after the first request: warm imports

        r = api.get(f"/v1/jobs/{job_id}/runs", params={"limit": RUNS})
        assert r.status_code == 200, r.text[:300]
        grown = _peak_rss(server.proc.pid) - before

        runs = r.json()["items"]
        print(f"page of {RUNS} runs: {len(r.content):,} bytes, peak RSS +{grown / MIB:.1f} MiB")
        assert len(runs) == RUNS
        assert len(r.content) <= PAGE_LIMIT, f"{len(r.content):,} bytes"
        assert all(run["output"] == OUTPUT[:LIST_OUTPUT_CHARS] for run in runs)
        assert all(run["output_truncated"] is True for run in runs)
        assert grown < RSS_GROWTH_LIMIT, f"peak RSS grew by {grown / MIB:.1f} MiB"

        # The whole output of one run, streamed: every character, still bounded memory.
        run_id = runs[0]["run_id"]
        before = _peak_rss(server.proc.pid)
        with api.stream("GET", f"/v1/jobs/{job_id}/runs/{run_id}/output") as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["content-type"] == "text/plain; charset=utf-8"
            text = b"".join(streamed.iter_bytes()).decode()
        assert text == OUTPUT
        assert _peak_rss(server.proc.pid) - before < RSS_GROWTH_LIMIT


def test_the_output_endpoint_answers_only_the_owner(server_factory: ServerFactory) -> None:
    server = server_factory(start=False)
    owner = new_user("owner")
    job_id = asyncio.run(_seed_small(server.data_dir / "chronoq.db", owner))
    server.start()
    with make_client(server.url, owner) as api:
        (run,) = api.get(f"/v1/jobs/{job_id}/runs").json()["items"]
        path = f"/v1/jobs/{job_id}/runs/{run['run_id']}/output"
        assert api.get(path).text == "short output"
        assert run["output_truncated"] is False
        assert_error(api.get(f"/v1/jobs/{job_id}/runs/not-a-uuid/output"), 400, field="run_id")
        unknown = f"/v1/jobs/{job_id}/runs/00000000-0000-4000-8000-000000000000/output"
        assert_error(api.get(unknown), 404)
    with make_client(server.url, new_user("other")) as stranger:
        assert_error(stranger.get(path), 404)


async def _seed_small(db: Path, user: str) -> str:
    now = datetime.now(UTC)
    store = SqliteStore(db)
    await store.start()
    try:
        job = make_job(user_id=user, next_fire_at=now, created_at=now)
        await store.insert_jobs([job])
        await claim_due(store, now)
        (claimed,) = await claim_runs(store, "seeder", now)
        done = outcome(
            claimed, RunStatus.COMPLETED, worker_id="seeder", started_at=now, output="short output"
        )
        assert await store.complete_runs([done]) == [True]
        return job.job_id
    finally:
        await store.close()


def test_a_job_list_never_fetches_offloaded_payloads(server_factory: ServerFactory) -> None:
    server = server_factory("--echo-delay", "0")
    big = json.dumps({"blob": "z" * 4096})
    with make_client(server.url, new_user("lists")) as api:
        job = create(api, project_id="p", payload=big, next_fire_at="2099-01-01T00:00:00Z")
        small = create(api, project_id="p", payload="hi", next_fire_at="2099-01-01T00:00:00Z")
        downloads = metric_sum(scrape(server.url), "s3_operations_total", operation="download")

        listed = {item["job_id"]: item for item in api.get("/v1/jobs").json()["items"]}
        assert listed[job["job_id"]]["payload"] is None
        assert listed[job["job_id"]]["payload_offloaded"] is True
        assert listed[job["job_id"]]["payload_size"] == len(big)
        assert listed[small["job_id"]]["payload"] == "hi"
        assert listed[small["job_id"]]["payload_offloaded"] is False
        after = metric_sum(scrape(server.url), "s3_operations_total", operation="download")
        assert after == downloads, "a job list downloaded payloads"

        assert get_job(api, job["job_id"])["payload"] == big  # one job: fetched back
