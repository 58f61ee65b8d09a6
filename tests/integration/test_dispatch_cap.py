"""A backlog of due fires drains at the configured dispatch rate, not in one stampede."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from chronoq.domain.clock import format_rfc3339
from tests.support.times import parse_ts, utcnow
from tests.support.waiting import wait_for

from .helpers import list_jobs, make_client, new_user

if TYPE_CHECKING:
    from .conftest import ServerFactory

pytestmark = pytest.mark.slow

RATE = 200
JOBS = 600


def test_due_backlog_is_dispatched_at_the_capped_rate(server_factory: ServerFactory) -> None:
    server = server_factory("--dispatch-rate", str(RATE))
    due = utcnow() + timedelta(seconds=1)
    with make_client(server.url, new_user("cap")) as api:
        r = api.post(
            "/v1/jobs:batch",
            json={"jobs": [{"project_id": "cap", "payload": "x",
                            "next_fire_at": format_rfc3339(due)} for _ in range(JOBS)]},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        ids = [j["job_id"] for j in r.json()["items"]]
        done = wait_for(
            lambda: sum(j["status"] == "COMPLETED" for j in list_jobs(api)) == JOBS, 20, 0.2
        )
        assert done
        triggered = sorted(
            parse_ts(api.get(f"/v1/jobs/{i}/runs").json()["items"][0]["triggered_at"]) for i in ids
        )
    spread = (triggered[-1] - triggered[0]).total_seconds()
    # One second's burst, then RATE per second: the last of 600 is claimed >= ~2 s later.
    assert spread >= (JOBS - RATE) / RATE * 0.9, spread
    # ... and within any second, never more than a burst plus a second's rate.
    for i, start in enumerate(triggered):
        window = [t for t in triggered[i:] if t - start <= timedelta(seconds=1)]
        assert len(window) <= 2 * RATE + 1, (start, len(window))
