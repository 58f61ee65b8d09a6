"""R7: S3 unreachable for 20 s under load (RELIABILITY.md), on a cluster of role processes
whose payloads over 1 KiB live in SeaweedFS (``--blob s3://``).

The outage has two halves: 10 s FROZEN (SIGSTOP: connections hang, the black hole a
dead network gives) and 10 s STOPPED (connections refused). Must hold:

* a large submission answers 503 and stores nothing; a small one is still accepted
  and runs; the API never answers 500 and never hangs past the client's timeout;
* large-payload fires that come due during the outage wait (workers retry the download
  with backoff, without using an attempt) and run once S3 is back;
* no job row points to a missing object;
* I1–I7 over the whole run, and every probe fire started exactly once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from chronoq.adapters.s3 import blob_store
from chronoq.domain.jobs import BLOB_REF_PREFIX
from chronoq.runtime.servers.s3 import SeaweedS3Server
from tests.support.s3_server import aws_env_fixture, s3_factory_fixture, s3_url  # noqa: F401
from tests.support.times import at, utcnow
from tests.support.waiting import wait_for

from .conftest import Chaos
from .harness import SETTLE, USER, hold

pytestmark = pytest.mark.chaos

HALF = 10.0
"""Seconds frozen, then seconds stopped: 20 s unreachable in all."""
CLIENT_TIMEOUT = 10.0
# Short S3 timeouts, so a frozen S3 is a 503 well inside the client's timeout (the
# adapter's deadline is max_attempts x (connect + read) + 1 s = 3 s here).
S3_OPTIONS = {"connect_timeout": "1", "read_timeout": "1", "max_attempts": "1"}
PADDING = 1200


def big(probe: str) -> str:
    """A probe payload over 1 KiB: offloaded to S3 (the tail is a shell no-op comment)."""
    return probe + "; : " + "x" * PADDING


def _outage_calls(chaos: Chaos, until: float, statuses: Counter[str], small_ids: list[str]) -> None:
    """Submit large and small jobs until ``until``, counting the answers."""
    api = chaos.sup.by_role("api")[0]
    with httpx.Client(
        base_url=api.url, headers={"X-User-ID": USER}, timeout=CLIENT_TIMEOUT
    ) as client:
        while time.monotonic() < until:
            for kind, payload in (("big", big("echo refused")), ("small", "echo small")):
                began = time.monotonic()
                try:
                    r = client.post("/v1/jobs", json={"project_id": "chaos", "payload": payload})
                    statuses[f"{kind} {r.status_code}"] += 1
                    if kind == "small" and r.status_code == 201:
                        small_ids.append(r.json()["job_id"])
                except httpx.HTTPError as exc:
                    statuses[f"{kind} {type(exc).__name__}"] += 1
                waited = int((time.monotonic() - began) * 1000)
                statuses["max_ms"] = max(statuses["max_ms"], waited)
            hold(0.25)  # the callers' pace


def _objects(url: str) -> set[str]:
    async def listing() -> set[str]:
        store = blob_store(url)
        await store.start()
        try:
            return {entry.key for entry in await store.list_objects("", limit=100_000)}
        finally:
            await store.close()

    return asyncio.run(listing())


@pytest.mark.chaos(seed=7)
def test_r7_s3_unreachable_for_20_seconds_under_load(
    chaos: Chaos, s3_factory: Callable[[], SeaweedS3Server], aws_env: dict[str, str]
) -> None:
    s3 = s3_factory()
    url = s3_url(s3, **S3_OPTIONS)
    chaos.cluster(("--blob", url), api=1, coordinator=1, picker=1, worker=2)
    rng = random.Random(chaos.sup.seed)
    assert chaos.api.submit(payload=big(chaos.ledger.probe(0.1)), cron_schedule="@every 2s")
    for _ in range(5):
        assert chaos.api.submit(payload=big(chaos.ledger.probe(rng.uniform(0.1, 0.5))))
    for _ in range(8):  # due inside the coming outage: accepted now, run after it
        assert chaos.api.submit(
            payload=big(chaos.ledger.probe(0.1)), next_fire_at=at(rng.uniform(2.0, 18.0))
        )
    hold(2.0)

    statuses: Counter[str] = Counter()
    small_ids: list[str] = []
    assert s3.process is not None
    chaos.sup.note("s3-freeze", "s3")
    s3.process.send_signal(signal.SIGSTOP)
    try:
        _outage_calls(chaos, time.monotonic() + HALF, statuses, small_ids)
    finally:
        s3.process.send_signal(signal.SIGCONT)
    chaos.sup.note("s3-stop", "s3")
    s3.stop()
    _outage_calls(chaos, time.monotonic() + HALF, statuses, small_ids)
    s3.start()
    chaos.sup.note("s3-start", "s3")

    assert wait_for(lambda: chaos.api.submit(payload=big("echo back")) is not None, 30), (
        chaos.book.summary()
    )
    cutoff = utcnow()
    hold(SETTLE)
    report = chaos.settle_and_check(cutoff, timeout=60)
    print(report)
    print(f"R7: outage answers {dict(statuses)}")

    assert statuses["big 503"] > 0 and statuses["small 201"] > 0, statuses
    bad = {k: v for k, v in statuses.items()
           if k != "max_ms" and k not in ("big 503", "small 201")}  # fmt: skip
    assert not bad, f"during the outage: {statuses}"
    assert statuses["max_ms"] < CLIENT_TIMEOUT * 1000, statuses

    rows: list[Any] = chaos.db.fetch("SELECT job_id::text, payload_ref FROM jobs")
    refs = {row[1].removeprefix(BLOB_REF_PREFIX) for row in rows if row[1] is not None}
    assert refs, "no job was offloaded: the scenario tested nothing"
    assert not refs - _objects(url), "a job row points to a missing object"
    refused = chaos.db.fetchval("SELECT count(*) FROM jobs WHERE payload_ref IS NOT NULL"
                                " AND payload IS NULL AND project_id = 'chaos'"
                                " AND job_id::text <> ALL($1::text[])",
                                [j for j in chaos.book.jobs])  # fmt: skip
    assert refused == 0, "a job answered 503 was stored"
    small_runs = chaos.db.fetchval(
        "SELECT count(*) FROM job_runs WHERE status = 'COMPLETED' AND job_id::text = ANY($1)",
        small_ids,
    )
    assert small_runs == len(small_ids), "a small job accepted during the outage did not run"
    assert report.ok, report
    starts = Counter((e.job_id, e.scheduled_for) for e in chaos.ledger.read())
    assert [fire for fire, n in starts.items() if n > 1] == [], "a fire started twice"
