"""Offloaded run outputs end to end (issue 8): ``chronoq up --output-offload-bytes 4096``
with a ``cmd:`` job printing ~109 KB.

* the folder blob store (the default): the object ``outputs/<run_id>-1`` holds every byte,
  the run list shows the head with ``output_truncated``, ``…/output`` returns every byte;
* S3 (a real SeaweedFS, ``--blob s3://``): the same through the bucket, counted in
  ``s3_operations_total{operation=upload|download}``; S3 stopped: ``…/output`` of the
  offloaded run is a 503 (never the head passed off as the whole) while the list still
  answers, and a run finishing meanwhile keeps its whole output inline (nothing lost);
  S3 back: the offloaded output reads again;
* PostgreSQL + S3: the row keeps the reference and only the head (checked with SQL), and
  the leader's sweep collects an old ``outputs/`` object no run references, never the
  referenced one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from chronoq.domain.ids import new_id
from chronoq.runtime.servers.s3 import SeaweedS3Server
from tests.support.metrics import metric_sum, scrape
from tests.support.s3_server import S3_ENV, s3_factory_fixture, s3_url  # noqa: F401
from tests.support.waiting import wait_for

from .helpers import create, get_runs, make_client, new_user
from .test_s3_blob import Bucket
from .test_s3_postgres import pg_dsn  # noqa: F401 - fixture

if TYPE_CHECKING:
    from .conftest import ServerFactory

PAYLOAD = "cmd:seq 1 20000"
EXPECTED = "".join(f"{i}\n" for i in range(1, 20001))  # 108,894 bytes
HEAD = 2048


def _finished(api: httpx.Client, job_id: str) -> dict[str, Any]:
    def done() -> list[dict[str, Any]] | None:
        runs = get_runs(api, job_id)
        return runs if runs and runs[0]["status"] == "COMPLETED" else None

    runs = wait_for(done, 20)
    assert runs, f"the job did not complete: {get_runs(api, job_id)}"
    (run,) = runs
    return run


def _output(api: httpx.Client, job_id: str, run_id: str) -> httpx.Response:
    return api.get(f"/v1/jobs/{job_id}/runs/{run_id}/output")


def test_a_large_output_goes_to_the_blob_folder_and_reads_back_whole(
    server_factory: ServerFactory,
) -> None:
    assert len(EXPECTED.encode()) > 100_000
    srv = server_factory("--output-offload-bytes", "4096")
    with make_client(srv.url, new_user("offload")) as api:
        job_id = create(api, payload=PAYLOAD)["job_id"]
        run = _finished(api, job_id)
        obj = srv.data_dir / "blobs" / "outputs" / f"{run['run_id']}-1"
        assert obj.read_bytes() == EXPECTED.encode()
        assert run["output"] == EXPECTED[:HEAD]
        assert run["output_truncated"] is True
        r = _output(api, job_id, run["run_id"])
        assert r.status_code == 200, r.text
        assert r.content == EXPECTED.encode()

        small = create(api, payload="cmd:seq 1 10")["job_id"]  # 21 bytes: inline
        small_run = _finished(api, small)
        assert not (srv.data_dir / "blobs" / "outputs" / f"{small_run['run_id']}-1").exists()
        assert (small_run["output"], small_run["output_truncated"]) == (
            "".join(f"{i}\n" for i in range(1, 11)), False
        )  # fmt: skip
        # another user never reads it
        with make_client(srv.url, new_user("intruder")) as other:
            assert _output(other, job_id, run["run_id"]).status_code == 404


@pytest.fixture(name="bucket_of")
def bucket_of_fixture() -> Iterator[Callable[[SeaweedS3Server, str], Bucket]]:
    made: list[Bucket] = []

    def make(server: SeaweedS3Server, url: str) -> Bucket:
        made.append(Bucket(server, url))
        return made[-1]

    yield make
    for bucket in made:
        bucket.client.close()


def _s3_count(url: str, operation: str) -> float:
    return metric_sum(scrape(url), "s3_operations_total", operation=operation)


def test_on_s3_offloaded_outputs_read_back_503_while_down_and_inline_when_puts_fail(
    server_factory: ServerFactory,
    s3_factory: Callable[[], SeaweedS3Server],
    bucket_of: Callable[[SeaweedS3Server, str], Bucket],
) -> None:
    s3 = s3_factory()
    url = s3_url(s3)
    srv = server_factory("--blob", url, "--output-offload-bytes", "4096", env=S3_ENV)
    bucket = bucket_of(s3, url)
    with make_client(srv.url, new_user("s3out")) as api:
        uploads = _s3_count(srv.url, "upload")
        job_id = create(api, payload=PAYLOAD)["job_id"]
        run = _finished(api, job_id)
        assert bucket.get(f"outputs/{run['run_id']}-1") == EXPECTED.encode()
        assert _s3_count(srv.url, "upload") == uploads + 1
        assert (run["output"], run["output_truncated"]) == (EXPECTED[:HEAD], True)
        downloads = _s3_count(srv.url, "download")
        r = _output(api, job_id, run["run_id"])
        assert (r.status_code, r.content) == (200, EXPECTED.encode())
        assert _s3_count(srv.url, "download") == downloads + 1

        s3.stop()
        r = _output(api, job_id, run["run_id"])
        assert r.status_code == 503, r.text
        assert get_runs(api, job_id)[0]["output"] == EXPECTED[:HEAD]  # the list still works
        # A run finishing while S3 is down: the put fails, the output stays inline, whole.
        down_job = create(api, payload=PAYLOAD)["job_id"]
        down_run = _finished(api, down_job)
        assert down_run["output_truncated"] is True  # a list cuts any long output
        r = _output(api, down_job, down_run["run_id"])
        assert (r.status_code, r.content) == (200, EXPECTED.encode())

        s3.start()
        r = _output(api, job_id, run["run_id"])
        assert (r.status_code, r.content) == (200, EXPECTED.encode())
    assert f"outputs/{down_run['run_id']}-1" not in bucket.listing()


def _row(dsn: str, run_id: str) -> tuple[str | None, int]:
    async def fetch() -> tuple[str | None, int]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            row = await conn.fetchrow(
                "SELECT output_ref, length(output) FROM job_runs WHERE run_id = $1", run_id
            )
            assert row is not None
            return row[0], int(row[1])
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_on_postgres_the_row_keeps_the_head_and_the_sweep_collects_orphan_outputs(
    server_factory: ServerFactory,
    s3_factory: Callable[[], SeaweedS3Server],
    bucket_of: Callable[[SeaweedS3Server, str], Bucket],
    pg_dsn: str,  # noqa: F811
) -> None:
    s3 = s3_factory()
    url = s3_url(s3)
    srv = server_factory(
        "--store", pg_dsn, "--blob", url, "--output-offload-bytes", "4096",
        "--blob-orphan-age", "2", env=S3_ENV,
    )  # fmt: skip
    bucket = bucket_of(s3, url)
    orphan = f"outputs/{new_id()}-1"  # put by a worker that died before its outcome
    bucket.put(orphan, b"nobody references this")
    with make_client(srv.url, new_user("pg-out")) as api:
        job_id = create(api, payload=PAYLOAD)["job_id"]
        run = _finished(api, job_id)
        key = f"outputs/{run['run_id']}-1"
        assert _row(pg_dsn, run["run_id"]) == ("blob:" + key, HEAD + 1)
        r = _output(api, job_id, run["run_id"])
        assert (r.status_code, r.content) == (200, EXPECTED.encode())

        assert wait_for(lambda: orphan not in bucket.listing(), 30), "orphan not collected"
        assert key in bucket.listing(), "a referenced output must never be swept"
        lists = _s3_count(srv.url, "list")
        assert wait_for(lambda: _s3_count(srv.url, "list") >= lists + 4, 20)  # more passes
        assert key in bucket.listing()
