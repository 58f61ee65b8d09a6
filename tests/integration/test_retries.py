"""Retries: a job that fails twice then succeeds; a job that exhausts its retries."""

from __future__ import annotations

import itertools
import shlex
from typing import TYPE_CHECKING

import pytest

from tests.support.times import parse_ts
from tests.support.waiting import stays_false

from .helpers import (
    RUN_TERMINAL,
    by_attempt,
    get_runs,
    make_client,
    new_user,
    submit,
    wait_job_status,
    wait_runs,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import ServerFactory, ServerHandle


@pytest.fixture(scope="module")
def fast_retry_server(module_server_factory: ServerFactory) -> ServerHandle:
    return module_server_factory("--retry-base", "0.05", "--retry-cap", "0.2", name="retry")


def _fire_done(runs: list[dict]) -> bool:  # type: ignore[type-arg]
    return any(r["status"] in RUN_TERMINAL for r in runs)


def test_fails_twice_then_succeeds(fast_retry_server: ServerHandle, tmp_path: Path) -> None:
    counter = shlex.quote(str(tmp_path / "attempts"))
    command = (
        f"cmd:n=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {counter}; "
        'echo "attempt $n"; [ "$n" -ge 3 ]'
    )
    with make_client(fast_retry_server.url, new_user("retry")) as api:
        job_id = submit(api, payload=command, max_retries=3)
        runs = by_attempt(wait_runs(api, job_id, _fire_done, 20, "a terminal run"))
        assert [r["attempt"] for r in runs] == [1, 2, 3], runs
        assert [r["status"] for r in runs] == ["RETRY_SCHEDULED", "RETRY_SCHEDULED", "COMPLETED"]
        assert [r["exit_code"] for r in runs] == [1, 1, 0], runs
        assert [r["output"].strip() for r in runs] == ["attempt 1", "attempt 2", "attempt 3"]
        assert len({r["scheduled_for"] for r in runs}) == 1, "retries belong to the same fire"
        assert len({r["run_id"] for r in runs}) == 3
        for earlier, later in itertools.pairwise(runs):
            assert parse_ts(later["started_at"]) >= parse_ts(earlier["completed_at"]), runs
        assert (tmp_path / "attempts").read_text().strip() == "3"
        wait_job_status(api, job_id, {"COMPLETED"}, 5)


def test_exhausted_retries_fail_the_job(fast_retry_server: ServerHandle) -> None:
    with make_client(fast_retry_server.url, new_user("retry")) as api:
        job_id = submit(api, payload="cmd:exit 1", max_retries=2)
        job = wait_job_status(api, job_id, {"FAILED", "COMPLETED", "CANCELLED"}, 20)
        assert job["status"] == "FAILED", job
        runs = by_attempt(wait_runs(api, job_id, _fire_done, 5, "a terminal run"))
        assert [r["attempt"] for r in runs] == [1, 2, 3], runs
        assert [r["status"] for r in runs] == ["RETRY_SCHEDULED", "RETRY_SCHEDULED", "FAILED"]
        assert all(r["exit_code"] == 1 for r in runs), runs
        # No fourth attempt shows up afterwards.
        assert stays_false(lambda: len(get_runs(api, job_id)) > 3, 1.0)


def test_no_retries_by_default(fast_retry_server: ServerHandle) -> None:
    with make_client(fast_retry_server.url, new_user("retry")) as api:
        job_id = submit(api, payload="cmd:exit 1")
        wait_job_status(api, job_id, {"FAILED"}, 10)
        runs = wait_runs(api, job_id, _fire_done, 5, "a terminal run")
        assert [(r["attempt"], r["status"]) for r in runs] == [(1, "FAILED")]
