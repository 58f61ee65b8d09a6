"""Crashes at the step boundaries that hurt most (RELIABILITY R3, R4), embedded mode.

``CHRONOQ_FAILPOINTS`` makes the server SIGKILL itself exactly at a named step;
the test restarts it without failpoints and checks the recurring job's fires
against a ledger only the job itself writes.
"""

from __future__ import annotations

import itertools
import shlex
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from tests.support.times import parse_ts
from tests.support.waiting import stays_false, wait_for

from .helpers import RUN_TERMINAL, completed, get_runs, make_client, new_user, wait_runs

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import ServerFactory

pytestmark = pytest.mark.slow

LEDGER_LINE = 'echo "$CHRONOQ_SCHEDULED_FOR $CHRONOQ_ATTEMPT" >> {ledger}'


def _ledger(path: Path) -> list[tuple[str, int]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [(fire, int(attempt)) for fire, attempt in (line.split() for line in lines)]


def _crash_then_recover(
    server_factory: ServerFactory, tmp_path: Path, failpoint: str
) -> tuple[list[tuple[str, int]], list[dict[str, object]]]:
    """Submit a 1 s recurring ledger job to a server armed with ``failpoint``, wait for the
    crash, restart without it, and return (ledger, runs) once 4 fires ran after the restart."""
    ledger = tmp_path / "ledger"
    server = server_factory("--lease-seconds", "2", env={"CHRONOQ_FAILPOINTS": f"{failpoint}=kill"})
    with make_client(server.url, new_user("fail")) as api:
        r = api.post(
            "/submit",
            json={
                "project_id": "failpoints",
                "payload": "cmd:" + LEDGER_LINE.format(ledger=shlex.quote(str(ledger))),
                "cron_schedule": "@every 1s",
            },
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        assert server.proc is not None
        assert wait_for(lambda: server.proc is not None and server.proc.poll() is not None, 10), (
            f"the {failpoint} failpoint did not kill the server"
        )
        server.extra_env.pop("CHRONOQ_FAILPOINTS")
        server.proc = None
        server.start()
        runs = wait_runs(api, job_id, lambda rs: len(completed(rs)) >= 5, 15, "5 completed fires")
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 200
        runs = wait_runs(
            api,
            job_id,
            lambda rs: all(r["status"] in RUN_TERMINAL | {"RETRY_SCHEDULED", "INTERRUPTED"}
                           for r in rs),
            10,
            "every run settled",
        )  # fmt: skip
        assert stays_false(lambda: len(get_runs(api, job_id)) > len(runs), 1.5)
        return _ledger(ledger), get_runs(api, job_id)


def _assert_one_outcome_per_fire(runs: list[dict[str, object]]) -> None:
    terminal = Counter(r["scheduled_for"] for r in runs if r["status"] in RUN_TERMINAL)
    assert all(n == 1 for n in terminal.values()), terminal
    fires = sorted({parse_ts(str(r["scheduled_for"])) for r in runs})
    gaps = [b - a for a, b in itertools.pairwise(fires)]
    # Missed fires coalesce into one catch-up fire, then the 1 s cadence resumes.
    assert all(gap % timedelta(seconds=1) == timedelta(0) for gap in gaps), gaps
    assert sum(gap == timedelta(seconds=1) for gap in gaps) >= 3, gaps


def test_crash_after_claim_runs_the_claimed_fire_once_and_keeps_the_schedule(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """R3: the picker claimed a fire (run + next fire committed), then the process died."""
    ledger, runs = _crash_then_recover(server_factory, tmp_path, "after_claim")
    first_fire = min(str(r["scheduled_for"]) for r in runs)
    executions = Counter(fire for fire, _attempt in ledger)
    assert executions, "nothing ran after the restart"
    assert all(n == 1 for n in executions.values()), f"a fire ran twice: {executions}"
    claimed = [r for r in runs if r["scheduled_for"] == first_fire]
    assert [r["status"] for r in claimed] == ["COMPLETED"], claimed
    _assert_one_outcome_per_fire(runs)


def test_crash_after_execution_before_result_keeps_every_next_fire(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """R4: the job ran, the process died before recording it; the schedule must live on."""
    ledger, runs = _crash_then_recover(server_factory, tmp_path, "after_execution")
    first_fire = min(str(r["scheduled_for"]) for r in runs)
    crashed = sorted((r for r in runs if r["scheduled_for"] == first_fire),
                     key=lambda r: int(str(r["attempt"])))  # fmt: skip
    # The executed-but-unrecorded attempt was started, so it is INTERRUPTED (its worker
    # died with the process) and redelivered as attempt 2: that fire ran twice, explained
    # by the crash and recorded.
    assert [r["attempt"] for r in crashed] == [1, 2], crashed
    assert crashed[0]["status"] == "INTERRUPTED", crashed
    assert crashed[1]["status"] == "COMPLETED", crashed
    executions = Counter(ledger)
    assert all(n == 1 for n in executions.values()), executions
    later = {fire for fire, _ in ledger if fire != ledger[0][0]}
    assert len(later) >= 4, f"the schedule did not go on after the crash: {ledger}"
    _assert_one_outcome_per_fire(runs)
