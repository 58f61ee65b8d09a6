"""R5: PostgreSQL crashes (immediate stop) under load, three times.

The server runs with ``fsync=on`` and ``synchronous_commit=on`` here (durability is
what is tested). Each cycle: load, crash PostgreSQL, keep calling the API through
the ~5 s outage, start PostgreSQL again, wait for the cluster to heal BY ITSELF.

Must hold: during the outage the API answers 503 (never 500, never hangs past the
5 s client timeout); afterwards every role works again in the same process (no
restart by the supervisor: the pids are unchanged); no accepted job is lost; fires
due during the outage run once (I1–I7).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.support.times import at, utcnow
from tests.support.waiting import wait_for

from .conftest import Chaos, private_postgres
from .harness import SETTLE, USER, ChaosPostgres, hold

pytestmark = pytest.mark.chaos

OUTAGE = 20.0  # RELIABILITY R5: 20 s, three times
CYCLES = 3
CLIENT_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def pg() -> Iterator[ChaosPostgres]:
    with private_postgres(fast=False) as server:
        yield server


def _load(chaos: Chaos, rng: random.Random, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        chaos.api.submit(payload=chaos.ledger.probe(rng.uniform(0.1, 1.0)), max_retries=2)
        hold(0.2)  # the load's pace


def _outage_calls(chaos: Chaos, until: float, statuses: Counter[str]) -> None:
    """Call the API until ``until`` (monotonic), counting what it answers."""
    api = chaos.sup.by_role("api")[0]
    known = next(iter(chaos.book.jobs))
    with httpx.Client(
        base_url=api.url, headers={"X-User-ID": USER}, timeout=CLIENT_TIMEOUT
    ) as client:
        while time.monotonic() < until:
            for method, path, body in (
                ("POST", "/v1/jobs", {"project_id": "chaos", "payload": "echo"}),
                ("GET", f"/v1/jobs/{known}", None),
                ("GET", "/v1/jobs", None),
            ):
                began = time.monotonic()
                try:
                    r = client.request(method, path, json=body)
                    statuses[f"{method} {r.status_code}"] += 1
                except httpx.TimeoutException:
                    statuses[f"{method} timeout"] += 1
                except httpx.HTTPError as exc:
                    statuses[f"{method} {type(exc).__name__}"] += 1
                statuses["max_ms"] = max(statuses["max_ms"], int((time.monotonic() - began) * 1000))
            hold(0.1)  # the callers' pace


@pytest.mark.chaos(seed=5)
def test_r5_postgres_crashes_three_times_under_load(chaos: Chaos) -> None:
    chaos.cluster(api=1, coordinator=1, picker=1, worker=2)
    rng = random.Random(chaos.sup.seed)
    for schedule in ("@every 1s", "@every 1s", "*/2 * * * * *", "*/2 * * * * *"):
        assert chaos.api.submit(payload=chaos.ledger.probe(0.2), cron_schedule=schedule)
    pids = {name: m.pid for name, m in chaos.sup.members.items()}
    outage_statuses: Counter[str] = Counter()
    heal_times = []
    for _cycle in range(CYCLES):
        _load(chaos, rng, 3.0)
        for _ in range(10):  # fires due inside the coming outage
            chaos.api.submit(
                payload=chaos.ledger.probe(0.2), next_fire_at=at(rng.uniform(1.0, 4.5))
            )
        chaos.sup.note("pg-crash", "postgres")
        chaos.pg.crash()
        _outage_calls(chaos, time.monotonic() + OUTAGE, outage_statuses)
        chaos.pg.start()
        started = chaos.sup.note("pg-start", "postgres")
        chaos.sup.wait_cluster(timeout=30)
        for name in chaos.sup.members:
            chaos.sup.wait_up(name, timeout=30)
        assert wait_for(lambda: chaos.api.submit(payload="echo") is not None, 15), (
            chaos.book.summary()
        )
        heal_times.append(round(time.time() - started.at, 2))

    _load(chaos, rng, 3.0)
    cutoff = utcnow()
    hold(SETTLE)
    report = chaos.settle_and_check(cutoff, timeout=45)
    print(report)
    print(f"R5: outage answers {dict(outage_statuses)}; healed in {heal_times} s")

    assert {name: m.pid for name, m in chaos.sup.members.items()} == pids, (
        "a role had to be restarted"
    )
    assert outage_statuses["POST 503"] > 0, outage_statuses
    bad = {k: v for k, v in outage_statuses.items() if k != "max_ms" and not k.endswith(" 503")}
    assert not bad, f"during the outage the API answered other than 503: {outage_statuses}"
    assert outage_statuses["max_ms"] < CLIENT_TIMEOUT * 1000, outage_statuses
    assert report.ok, report
