"""The distributed mode with S3: ``chronoq up --store postgresql://... --blob s3://...``.

A 5 KiB payload round-trips through SeaweedFS and the job runs; with S3 stopped a large
submission answers 503 and the ``jobs`` table really has no new row (read with SQL);
the elected leader collects an orphaned object and keeps the referenced one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import asyncpg
import pytest

from chronoq.domain.ids import new_id
from chronoq.runtime.servers.s3 import SeaweedS3Server
from tests.support.postgres import create_database, drop_database
from tests.support.s3_server import S3_ENV, s3_factory_fixture, s3_url  # noqa: F401
from tests.support.waiting import wait_for

from .helpers import create, get_job, make_client, new_user
from .test_s3_blob import Buckets, big_payload, buckets_fixture, count, runs_of  # noqa: F401

if TYPE_CHECKING:
    from .conftest import ServerFactory

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    name = f"s3_{uuid.uuid4().hex[:12]}"
    dsn = create_database(ADMIN_DSN, name)
    try:
        yield dsn
    finally:
        drop_database(ADMIN_DSN, name)


def job_rows(dsn: str) -> int:
    async def count_rows() -> int:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM jobs"))
        finally:
            await conn.close()

    return asyncio.run(count_rows())


def test_postgres_and_s3_round_trip_503_without_a_row_and_orphans_collected(
    server_factory: ServerFactory,
    s3_factory: Callable[[], SeaweedS3Server],
    buckets: Buckets,
    pg_dsn: str,
) -> None:
    s3 = s3_factory()
    url = s3_url(s3)
    srv = server_factory("--store", pg_dsn, "--blob", url, "--blob-orphan-age", "2", env=S3_ENV)
    bucket = buckets(s3, url)
    orphan = f"payloads/{new_id()}"
    bucket.put(orphan, b"put by an api that died before its insert")
    with make_client(srv.url, new_user("pg-s3")) as api:
        payload = big_payload("pg")
        job_id = create(api, payload=payload)["job_id"]
        runs = runs_of(api, job_id, lambda r: r[0]["status"] == "COMPLETED", 20)
        assert [(r["status"], r["attempt"]) for r in runs] == [("COMPLETED", 1)], runs
        assert get_job(api, job_id)["payload"] == payload

        assert wait_for(lambda: orphan not in bucket.listing(), 20), "orphan not collected"
        lists = count(srv.url, "list")
        assert wait_for(lambda: count(srv.url, "list") >= lists + 8, 20)  # referenced: old now
        assert bucket.listing() == [f"payloads/{job_id}"]

        s3.stop()
        rows = job_rows(pg_dsn)
        r = api.post("/v1/jobs", json={"project_id": "it", "payload": big_payload("down")})
        assert r.status_code == 503, r.text
        assert job_rows(pg_dsn) == rows, "a refused submission inserted a job row"
        small = create(api, payload="small, S3 down")["job_id"]
        assert job_rows(pg_dsn) == rows + 1
        runs = runs_of(api, small, lambda r: r[0]["status"] == "COMPLETED", 20)
        assert runs[0]["status"] == "COMPLETED", runs
    s3.start()
    assert bucket.listing() == [f"payloads/{job_id}"]
