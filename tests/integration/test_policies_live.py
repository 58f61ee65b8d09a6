"""Schedule policies against a running server (issue 9.2–9.5, 9.11), read through the API
and the fire ledger: overlap (skip, allow, buffer_one, cancel_previous), max_fires,
end_at, jitter, and misfires while the server was stopped. SQLite, real time, bounded
polls; the rules themselves are tested on the fake clock elsewhere."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from chronoq.domain.clock import format_rfc3339
from tests.support.times import parse_ts, utcnow
from tests.support.waiting import wait_for

from .helpers import create, get_runs, make_client, new_user, wait_job_status

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerFactory, ServerHandle

pytestmark = pytest.mark.slow
LONG = "sleep:2500ms"
"""Longer than two fires of ``@every 1s``: each run overlaps the next fires."""


@pytest.fixture
def api(server: ServerHandle) -> Iterator[httpx.Client]:
    with make_client(server.url, new_user("pol")) as client:
        yield client


def _fires(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/jobs/{job_id}/fires", params={"limit": 1000})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _wait_fires(
    api: httpx.Client, job_id: str, ok: Any, timeout: float = 20
) -> list[dict[str, Any]]:
    seen: list[list[dict[str, Any]]] = [[]]

    def check() -> bool:
        seen[0] = _fires(api, job_id)
        return bool(ok(seen[0]))

    assert wait_for(check, timeout), f"ledger never got there: {seen[0]}"
    return seen[0]


def _intervals(runs: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """(start, end) of the runs that started, oldest first (end: None while running)."""
    started = [r for r in runs if r["started_at"]]
    spans = [
        (parse_ts(r["started_at"]), parse_ts(r["completed_at"]) if r["completed_at"] else None)
        for r in started
    ]
    return sorted(spans, key=lambda s: s[0])


def _overlapping(spans: list[tuple[Any, Any]]) -> bool:
    return any(b[0] < (a[1] or b[0] + timedelta(days=1)) for a, b in itertools.pairwise(spans))


def test_overlap_skip_skips_fires_while_a_run_is_going(api: httpx.Client) -> None:
    job = create(api, payload=LONG, cron_schedule="@every 1s")
    fires = _wait_fires(
        api, job["job_id"], lambda fs: sum(f["outcome"] == "COMPLETED" for f in fs) >= 2
    )
    api.post(f"/v1/jobs/{job['job_id']}:pause")
    assert {f["reason"] for f in fires if f["outcome"] == "SKIPPED"} == {"overlap"}, fires
    assert not _overlapping(_intervals(get_runs(api, job["job_id"])))


def test_overlap_allow_lets_runs_overlap(api: httpx.Client) -> None:
    job = create(api, payload=LONG, cron_schedule="@every 1s", overlap="allow")
    runs = wait_for(lambda: (rs := get_runs(api, job["job_id"])) and
                    _overlapping(_intervals(rs)) and rs, 15)  # fmt: skip
    api.post(f"/v1/jobs/{job['job_id']}:pause")
    assert runs, "runs of an overlap=allow job never overlapped"
    assert all(f["reason"] != "overlap" for f in _fires(api, job["job_id"]))


def test_buffer_one_starts_the_next_run_when_the_last_ends(api: httpx.Client) -> None:
    job = create(api, payload=LONG, cron_schedule="@every 1s", overlap="buffer_one")
    _wait_fires(api, job["job_id"], lambda fs: sum(f["outcome"] == "COMPLETED" for f in fs) >= 2)
    api.post(f"/v1/jobs/{job['job_id']}:pause")
    spans = [s for s in _intervals(get_runs(api, job["job_id"])) if s[1] is not None]
    assert len(spans) >= 2 and not _overlapping(spans)
    gap = spans[1][0] - spans[0][1]
    assert timedelta(0) <= gap < timedelta(seconds=1.5), spans  # started as the first ended
    reasons = {f["reason"] for f in _fires(api, job["job_id"]) if f["outcome"] == "SKIPPED"}
    assert reasons <= {"overlap", "paused"}  # a third fire while one was buffered: skipped


def test_cancel_previous_stops_the_running_run(api: httpx.Client) -> None:
    job = create(api, payload="sleep:30s", cron_schedule="@every 2s", overlap="cancel_previous")
    fires = _wait_fires(api, job["job_id"], lambda fs: any(f["outcome"] == "CANCELLED" for f in fs))
    api.post(f"/v1/jobs/{job['job_id']}:pause")
    cancelled = [f for f in fires if f["outcome"] == "CANCELLED"]
    later = [f for f in fires if f["scheduled_for"] > cancelled[0]["scheduled_for"]]
    assert later and later[0]["outcome"] in ("QUEUED", "RUNNING", "CANCELLED"), fires


def test_max_fires_ends_the_schedule(api: httpx.Client) -> None:
    job = create(api, payload="x", cron_schedule="@every 1s", max_fires=3)
    done = wait_job_status(api, job["job_id"], {"COMPLETED"}, 20)
    assert done["fire_count"] == 3 and done["next_fire_at"] is None
    fires = _fires(api, job["job_id"])
    assert [f["outcome"] for f in fires] == ["COMPLETED"] * 3, fires


def test_end_at_ends_the_schedule(api: httpx.Client) -> None:
    end = utcnow() + timedelta(seconds=2.5)
    job = create(api, payload="x", cron_schedule="@every 1s", end_at=format_rfc3339(end))
    wait_job_status(api, job["job_id"], {"COMPLETED"}, 20)
    fires = _fires(api, job["job_id"])
    assert fires and all(parse_ts(f["scheduled_for"]) <= end for f in fires), fires
    assert 1 <= len(fires) <= 3


def test_jitter_delays_each_fire_within_its_bound(api: httpx.Client) -> None:
    job = create(api, payload="x", cron_schedule="@every 1s", jitter_seconds=0.8)
    runs = wait_for(lambda: len(rs := [r for r in get_runs(api, job["job_id"])
                                       if r["started_at"]]) >= 4 and rs, 20)  # fmt: skip
    api.post(f"/v1/jobs/{job['job_id']}:pause")
    assert runs
    delays = [parse_ts(r["started_at"]) - parse_ts(r["scheduled_for"]) for r in runs]
    assert all(timedelta(0) <= d < timedelta(seconds=0.8 + 0.5) for d in delays), delays
    assert len({round(d.total_seconds(), 2) for d in delays}) > 1  # spread, not one offset


@pytest.mark.parametrize("misfire", ["run_once", "skip"])
def test_fires_missed_while_the_server_was_down_follow_the_misfire_policy(
    server_factory: ServerFactory, misfire: str
) -> None:
    server = server_factory()
    user = new_user("mis")
    with make_client(server.url, user) as api:
        job = create(api, payload="x", cron_schedule="@every 1s", misfire=misfire)
        _wait_fires(api, job["job_id"], lambda fs: len(fs) >= 2)
    server.stop()
    stopped = utcnow()
    wait_for(lambda: utcnow() > stopped + timedelta(seconds=8), 12)  # > MISFIRE_GRACE of fires
    server.start()
    with make_client(server.url, user) as api:
        fires = _wait_fires(
            api, job["job_id"],
            lambda fs: any(f["reason"] == "misfire" for f in fs)
            and parse_ts(fs[-1]["scheduled_for"]) > stopped + timedelta(seconds=8),
        )  # fmt: skip
        api.post(f"/v1/jobs/{job['job_id']}:pause")
    missed = [f for f in fires if f["reason"] == "misfire"]
    assert sum(f["count"] or 0 for f in missed) >= 5, fires
    down = [
        f for f in fires if stopped < parse_ts(f["scheduled_for"]) < stopped + timedelta(seconds=7)
    ]
    ran = [f for f in down if f["outcome"] != "SKIPPED"]
    if misfire == "run_once":
        assert len(ran) == 1, fires  # the backlog coalesced into one run
    else:
        assert ran == [], fires  # every missed fire skipped
