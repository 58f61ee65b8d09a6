"""/metrics: the seed's metric names, moving with real work, and no unbounded labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.metrics import metric_sum, parse_metrics, scrape
from tests.support.times import at
from tests.support.waiting import wait_for

from .helpers import RUN_TERMINAL, make_client, new_user, submit, wait_runs

if TYPE_CHECKING:
    from .conftest import ServerHandle

FIRE_LAG = "job_fire_lag_seconds"


def _terminal(runs: list[dict]) -> bool:  # type: ignore[type-arg]
    return bool(runs) and all(r["status"] in RUN_TERMINAL for r in runs)


def test_metrics_names_values_and_labels(server: ServerHandle) -> None:
    with server.client() as client:
        r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    before = r.text

    user = new_user("metrics-user")
    with make_client(server.url, user) as api:
        ok = submit(api, payload="metrics-ok")
        bad = submit(api, payload="cmd:exit 4")
        # Due later, so a picker fires it (the two above are fired in their insert).
        later = submit(api, payload="metrics-later", next_fire_at=at(0.3))
        for job_id in (ok, bad, later):
            wait_runs(api, job_id, _terminal, 10, "a terminal run")
            api.get(f"/v1/jobs/{job_id}")
            api.get("/job", params={"id": job_id})

    def moved() -> str:
        text = scrape(server.url)
        done = (
            metric_sum(text, "jobs_executed_total") >= metric_sum(before, "jobs_executed_total") + 3
        )
        return text if done else ""

    after = wait_for(moved, 5)
    assert after, "jobs_executed_total did not count three executions"
    names = {name for name, _, _ in parse_metrics(after)}

    for counter in (
        "http_requests_total",
        "jobs_created_total",
        "jobs_executed_total",
        "jobs_scanned_total",
        "jobs_enqueued_total",
    ):
        assert counter in names, f"{counter} missing from /metrics"
    for histogram in ("job_execution_duration_seconds", FIRE_LAG):
        for suffix in ("_bucket", "_count", "_sum"):
            assert histogram + suffix in names, f"{histogram}{suffix} missing from /metrics"

    def delta(name: str) -> float:
        return metric_sum(after, name) - metric_sum(before, name)

    assert delta("jobs_created_total") >= 3
    assert delta("http_requests_total") >= 9
    assert delta("jobs_enqueued_total") >= 3  # two at insert, one by the picker
    assert delta("jobs_scanned_total") >= 1
    assert delta("job_execution_duration_seconds_count") >= 3
    assert delta(FIRE_LAG + "_count") >= 3

    executed = [labels for name, labels, _ in parse_metrics(after) if name == "jobs_executed_total"]
    assert all("status" in labels for labels in executed), executed
    statuses = {labels["status"] for labels in executed}
    assert len(statuses) >= 2, f"a success and a failure should differ by status: {statuses}"

    # No label carries a user id or a job id (unbounded values).
    assert user not in after
    assert ok not in after and bad not in after
    for name, labels, _ in parse_metrics(after):
        for value in labels.values():
            assert "metrics-user" not in value, (name, labels)
