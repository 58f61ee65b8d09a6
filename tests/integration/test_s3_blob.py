"""``chronoq up --blob s3://...`` against a real SeaweedFS (docs/backends/s3.md).

* a 5 KiB payload goes to the bucket before 201, the worker downloads it, the job runs,
  the API gives it back, and ``s3_operations_total`` counts the calls;
* S3 stopped: a large submission answers 503 quickly and stores nothing (no job row, no
  object), small ones are still accepted and run; a run whose download failed while S3
  was down completes once S3 is back, on attempt 1, although ``max_retries`` is 0;
* an object put by an api killed between put and insert (failpoint ``after_blob_put``)
  is collected by the leader once older than ``--blob-orphan-age``; objects a job
  references, and keys that are not ``payloads/<uuid>``, never are;
* S3 hung (SIGSTOP: connections accepted, never answered): 503 within the URL's
  timeouts, nothing stored.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3  # type: ignore[import-untyped]
import httpx
import pytest
from botocore.config import Config

from chronoq.adapters.s3 import parse_s3_url
from chronoq.domain.clock import format_rfc3339
from chronoq.domain.ids import new_id
from chronoq.runtime.servers.s3 import SeaweedS3Server
from tests.support.metrics import metric_sum, scrape
from tests.support.s3_server import (  # noqa: F401 - fixtures
    ACCESS_KEY,
    S3_ENV,
    SECRET_KEY,
    s3_factory_fixture,
    s3_server_fixture,
    s3_url,
)
from tests.support.waiting import wait_for

from .helpers import Guard, create, get_job, get_runs, make_client, new_user

if TYPE_CHECKING:
    from .conftest import ServerFactory

S3 = "s3_operations_total"
Buckets = Callable[[SeaweedS3Server, str], "Bucket"]
BIG = 5 * 1024


class Bucket:
    """The test's own view of the bucket (boto3, explicit credentials, no retries)."""

    def __init__(self, server: SeaweedS3Server, url: str) -> None:
        options = parse_s3_url(url)
        self.name, self.base = options.bucket, f"{options.prefix}/"
        self.client: Any = boto3.client(
            "s3", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=5,
                          retries={"max_attempts": 1}),
        )  # fmt: skip

    def listing(self) -> list[str]:
        resp = self.client.list_objects_v2(Bucket=self.name, Prefix=self.base)
        return [item["Key"][len(self.base) :] for item in resp.get("Contents", ())]

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=self.base + key)["Body"].read()
        return body

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=self.base + key, Body=data)


@pytest.fixture(name="buckets")
def buckets_fixture() -> Iterator[Callable[[SeaweedS3Server, str], Bucket]]:
    """``buckets(server, url)``: a ``Bucket``, its client closed at the end of the test."""
    made: list[Bucket] = []

    def make(server: SeaweedS3Server, url: str) -> Bucket:
        made.append(Bucket(server, url))
        return made[-1]

    yield make
    for bucket in made:
        bucket.client.close()


def big_payload(tag: str) -> str:
    payload = f"{tag}-{uuid.uuid4().hex}-" + "p" * BIG
    assert len(payload.encode()) > 1024
    return payload


def count(url: str, operation: str) -> float:
    return metric_sum(scrape(url), S3, operation=operation)


def runs_of(
    api: httpx.Client, job_id: str, want: Callable[[list[dict[str, Any]]], bool], timeout: float
) -> list[dict[str, Any]]:
    """The job's runs once ``want(runs)`` holds (or as they are at the deadline)."""
    wait_for(lambda: (runs := get_runs(api, job_id)) and want(runs), timeout)
    return get_runs(api, job_id)


def test_a_5kib_payload_round_trips_through_s3_and_the_job_runs(
    server_factory: ServerFactory, s3_server: SeaweedS3Server, buckets: Buckets
) -> None:
    url = s3_url(s3_server)
    srv = server_factory("--blob", url, env=S3_ENV)
    bucket = buckets(s3_server, url)
    payload = big_payload("roundtrip")
    before = {op: count(srv.url, op) for op in ("upload", "download")}
    with make_client(srv.url, new_user("s3")) as api:
        job_id = create(api, payload=payload)["job_id"]
        # In the bucket before 201, byte for byte, and not in the row.
        assert bucket.get(f"payloads/{job_id}") == payload.encode()
        assert count(srv.url, "upload") == before["upload"] + 1
        runs = runs_of(api, job_id, lambda r: r[0]["status"] == "COMPLETED", 15)
        assert [(r["status"], r["attempt"]) for r in runs] == [("COMPLETED", 1)], runs
        assert runs[0]["output"].startswith("Success: " + payload[:1000])  # lists cut output
        assert count(srv.url, "download") >= before["download"] + 1
        assert get_job(api, job_id)["payload"] == payload  # fetched back from S3


def test_s3_down_503_and_nothing_stored_small_still_accepted_downloads_wait_for_s3(
    server_factory: ServerFactory, s3_factory: Callable[[], SeaweedS3Server], buckets: Buckets
) -> None:
    s3 = s3_factory()
    url = s3_url(s3)
    srv = server_factory("--blob", url, "--retry-base", "0.05", env=S3_ENV)
    bucket = buckets(s3, url)
    with make_client(srv.url, new_user("s3down")) as api:
        # Uploaded while S3 is up; due once S3 is down; no retry allowed at all.
        fire_at = datetime.now(UTC) + timedelta(seconds=2)
        waiting = big_payload("waiting")
        job_id = create(api, payload=waiting, max_retries=0,
                        next_fire_at=format_rfc3339(fire_at))["job_id"]  # fmt: skip
        assert bucket.listing() == [f"payloads/{job_id}"]
        s3.stop()
        downloads = count(srv.url, "download")

        guard = Guard(srv)
        started = datetime.now(UTC)
        r = guard.client.post("/v1/jobs", json={"project_id": "it", "payload": big_payload("x")})
        assert r.status_code == 503, r.text
        assert datetime.now(UTC) - started < timedelta(seconds=8), "S3 down must fail fast"
        guard.assert_nothing_stored()
        r = guard.client.post("/submit", json={"project_id": "it", "payload": big_payload("y")})
        assert r.status_code == 503, r.text
        guard.assert_nothing_stored()
        guard.client.close()

        assert api.get(f"/v1/jobs/{job_id}").status_code == 503  # its payload is in S3
        small = create(api, payload="small while S3 is down")["job_id"]
        small_runs = runs_of(api, small, lambda r: r[0]["status"] == "COMPLETED", 15)
        assert small_runs[0]["status"] == "COMPLETED", small_runs

        # The due run keeps trying to download, without failing or using an attempt.
        assert wait_for(lambda: count(srv.url, "download") >= downloads + 3, 15), (
            "the worker must retry the download while S3 is down"
        )
        runs = get_runs(api, job_id)
        assert [(r["status"], r["attempt"]) for r in runs] == [("RUNNING", 1)], runs

        s3.start()
        runs = runs_of(api, job_id, lambda r: r[0]["status"] == "COMPLETED", 20)
        assert [(r["status"], r["attempt"]) for r in runs] == [("COMPLETED", 1)], runs
        assert runs[0]["output"].startswith("Success: " + waiting[:1000])
    assert bucket.listing() == [f"payloads/{job_id}"], "the refused uploads left objects"


def test_the_leader_collects_an_object_orphaned_by_a_crash_and_never_a_referenced_one(
    server_factory: ServerFactory, s3_server: SeaweedS3Server, buckets: Buckets
) -> None:
    url = s3_url(s3_server)
    env = {**S3_ENV, "CHRONOQ_FAILPOINTS": "after_blob_put=kill"}
    srv = server_factory("--blob", url, "--blob-orphan-age", "2", env=env)
    bucket = buckets(s3_server, url)
    with make_client(srv.url, new_user("orphan")) as api, pytest.raises(httpx.HTTPError):
        api.post("/v1/jobs", json={"project_id": "it", "payload": big_payload("crash")})
    assert wait_for(lambda: not srv.running, 10), "the failpoint must kill the server"
    [orphan] = bucket.listing()
    assert orphan.startswith("payloads/")
    # Never ours to delete: not payloads/<uuid>, or under another prefix.
    elsewhere = "elsewhere/" + new_id()
    bucket.put("payloads/not-a-job-id", b"keep")
    bucket.put(elsewhere, b"keep")

    del srv.extra_env["CHRONOQ_FAILPOINTS"]
    srv.start()
    with make_client(srv.url, new_user("orphan")) as api:
        later = format_rfc3339(datetime.now(UTC) + timedelta(hours=1))
        kept = create(api, payload=big_payload("kept"), next_fire_at=later)["job_id"]
        assert wait_for(lambda: orphan not in bucket.listing(), 20), "the orphan was not collected"
        lists = count(srv.url, "list")
        assert count(srv.url, "delete") >= 1 and lists >= 1
        # More sweeps (every 0.5 s) pass once the referenced object is old enough to be
        # a candidate: the store says its job exists, so it stays.
        assert wait_for(lambda: count(srv.url, "list") >= lists + 8, 20)
        assert get_job(api, kept)["payload"].startswith("kept-")
    assert sorted(bucket.listing()) == sorted(
        [f"payloads/{kept}", "payloads/not-a-job-id", elsewhere]
    )


def test_a_hung_s3_answers_503_within_the_timeouts_and_stores_nothing(
    server_factory: ServerFactory, s3_factory: Callable[[], SeaweedS3Server], buckets: Buckets
) -> None:
    s3 = s3_factory()
    url = s3_url(s3, read_timeout="1", connect_timeout="1", max_attempts="2")
    srv = server_factory("--blob", url, env=S3_ENV)
    bucket = buckets(s3, url)
    assert s3.process is not None
    os.killpg(s3.process.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        guard = Guard(srv)
        began = time.monotonic()
        r = guard.client.post("/v1/jobs", json={"project_id": "it", "payload": big_payload("h")})
        took = time.monotonic() - began
        assert r.status_code == 503, r.text
        assert took < 8, f"2 attempts of 1 s timeouts (+ backoff) took {took:.1f} s"
        guard.assert_nothing_stored()
        guard.client.close()
    finally:
        os.killpg(s3.process.pid, signal.SIGCONT)
    with make_client(srv.url, new_user("s3back")) as api:
        job_id = create(api, payload=big_payload("back"))["job_id"]
    assert bucket.listing() == [f"payloads/{job_id}"]
