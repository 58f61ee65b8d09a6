"""Recurring jobs: `@every 2s`, seconds-first cron `*/2 * * * * *`, a recurring shell job.

The three jobs are submitted together when the module starts, so their
six-second observation windows overlap instead of adding up.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.times import parse_ts, utcnow

from .helpers import completed, get_job, make_client, new_user, wait_runs

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerHandle

pytestmark = pytest.mark.slow

MAX_LAG = timedelta(milliseconds=500)
SPECS = {
    "every": {"payload": "every-2s", "cron_schedule": "@every 2s"},
    "cron": {"payload": "cron-even-seconds", "cron_schedule": "*/2 * * * * *"},
    "shell": {"payload": "cmd:echo tick", "cron_schedule": "@every 1s"},
}


@pytest.fixture(scope="module")
def recurring(server: ServerHandle) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    with make_client(server.url, new_user("rec")) as api:
        jobs: dict[str, Any] = {"submitted_at": time.monotonic(), "at": utcnow()}
        for name, spec in SPECS.items():
            r = api.post("/submit", json={"project_id": "recurring", **spec})
            assert r.status_code == 201, r.text
            jobs[name] = r.json()["job_id"]
        yield api, jobs
        for name in SPECS:
            api.delete(f"/v1/jobs/{jobs[name]}")


def _window_left(jobs: dict[str, Any], seconds: float) -> float:
    return max(0.5, seconds - (time.monotonic() - jobs["submitted_at"]))


def _check_lag(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        scheduled = parse_ts(run["scheduled_for"])
        started = parse_ts(run["started_at"])
        assert started >= scheduled - timedelta(milliseconds=1), f"started early: {run}"
        assert started - scheduled < MAX_LAG, f"fire lag too large: {run}"


def _check_distinct_fires(runs: list[dict[str, Any]]) -> list[Any]:
    fires = sorted(parse_ts(r["scheduled_for"]) for r in runs)
    assert len(set(fires)) == len(fires), f"two runs for one fire: {runs}"
    return fires


def test_every_2s_fires_twice_in_6s(recurring: tuple[httpx.Client, dict[str, Any]]) -> None:
    api, jobs = recurring
    job_id = jobs["every"]
    runs = wait_runs(
        api, job_id, lambda rs: len(completed(rs)) >= 2, _window_left(jobs, 6.5), ">= 2 runs"
    )
    done = completed(runs)
    assert all(r["output"] == "Success: every-2s" for r in done), done
    _check_lag(done)
    fires = _check_distinct_fires(done)
    for a, b in itertools.pairwise(fires):
        assert abs((b - a) - timedelta(seconds=2)) < timedelta(milliseconds=5), fires
    job = get_job(api, job_id)
    assert job["status"] in {"PENDING", "RUNNING"}, job
    assert job["cron_schedule"] == "@every 2s"
    assert parse_ts(job["next_fire_at"]) > fires[-1]
    seed_view = api.get("/job", params={"id": job_id}).json()
    assert seed_view["cron_schedule"] == "@every 2s"


def test_seconds_cron_fires_on_even_seconds(
    recurring: tuple[httpx.Client, dict[str, Any]],
) -> None:
    api, jobs = recurring
    job_id = jobs["cron"]
    runs = wait_runs(
        api, job_id, lambda rs: len(completed(rs)) >= 2, _window_left(jobs, 6.5), ">= 2 runs"
    )
    done = completed(runs)
    assert all(r["output"] == "Success: cron-even-seconds" for r in done), done
    for run in done:
        fire = parse_ts(run["scheduled_for"])
        assert fire.second % 2 == 0 and fire.microsecond == 0, f"not an even second: {run}"
    _check_lag(done)
    fires = _check_distinct_fires(done)
    for a, b in itertools.pairwise(fires):
        assert (b - a) == timedelta(seconds=2), f"a fire was skipped: {fires}"
    assert fires[0] >= jobs["at"] - timedelta(milliseconds=1), "fired before the submission"
    assert get_job(api, job_id)["status"] in {"PENDING", "RUNNING"}


def test_recurring_shell_job_runs_each_second(
    recurring: tuple[httpx.Client, dict[str, Any]],
) -> None:
    api, jobs = recurring
    runs = wait_runs(
        api, jobs["shell"], lambda rs: len(completed(rs)) >= 4, _window_left(jobs, 6.5), ">= 4"
    )
    done = completed(runs)
    for run in done:
        assert run["output"].strip() == "tick", run
        assert run["exit_code"] == 0, run
        assert run["attempt"] == 1, run
    _check_lag(done)
    _check_distinct_fires(done)
