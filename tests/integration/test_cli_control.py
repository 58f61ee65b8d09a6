"""Job control through the Python client and the CLI against a running server (issue 9):
submit with policies and an idempotency key, pause / resume / trigger / edit / fires /
delete --purge, and their errors."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from chronoq import Client
from chronoq.cli.main import main
from chronoq.client import RESET
from chronoq.errors import ConflictError, NotFoundError, ValidationError
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    from .conftest import ServerHandle


def _user() -> str:
    return f"ctl-{uuid.uuid4().hex[:8]}"


def _cli(server: ServerHandle, user: str, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--url", server.url, "--user", user])


def _cli_json(server: ServerHandle, user: str, *args: str) -> Any:
    result = _cli(server, user, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_client_submit_with_policies_and_key(server: ServerHandle) -> None:
    end = datetime.now(UTC) + timedelta(days=7)
    with Client(server.url, user_id=_user()) as client:
        job = client.submit(
            "p", "x", cron_schedule="0 * * * *", overlap="cancel_previous", misfire="run_all",
            catch_up_window_seconds=120, jitter_seconds=1.5, end_at=end, max_fires=10,
            idempotency_key="client-key",
        )  # fmt: skip
        assert (job["overlap"], job["misfire"], job["max_fires"]) == ("cancel_previous",
                                                                      "run_all", 10)  # fmt: skip
        again = client.submit(
            "p", "x", cron_schedule="0 * * * *", overlap="cancel_previous", misfire="run_all",
            catch_up_window_seconds=120, jitter_seconds=1.5, end_at=end, max_fires=10,
            idempotency_key="client-key",
        )  # fmt: skip
        assert again["job_id"] == job["job_id"]
        with pytest.raises(ConflictError):
            client.submit("p", "y", cron_schedule="0 * * * *", idempotency_key="client-key")
        with pytest.raises(ValidationError) as bad:
            client.submit("p", "x", overlap="allow")  # one-shot
        assert bad.value.field == "overlap"
        with pytest.raises(ValidationError):
            client.submit("p", "x", cron_schedule="@every 1h", end_at=datetime(2030, 1, 1))
        with pytest.raises(TypeError):
            client.submit("p", "x", overlapp="allow")


def test_client_control_calls(server: ServerHandle) -> None:
    with Client(server.url, user_id=_user()) as client:
        job = client.submit("p", "tick", cron_schedule="0 * * * *", jitter_seconds=5)
        job_id = job["job_id"]
        assert client.pause(job_id)["status"] == "PAUSED"
        assert client.resume(job_id, catch_up=True)["status"] == "PENDING"
        run = client.trigger(job_id)
        assert run["manual"] is True
        fires = wait_for(
            lambda: [f for f in client.fires(job_id) if f["outcome"] == "COMPLETED"], 15
        )
        assert fires and fires[0]["run_id"] == run["run_id"] and fires[0]["manual"]
        start = datetime.now(UTC) - timedelta(minutes=5)
        assert client.fires(job_id, start=start, end=datetime.now(UTC), limit=5) == fires
        changed = client.update(job_id, cron_schedule="15 * * * *", jitter_seconds=RESET,
                                max_retries=2)  # fmt: skip
        assert (changed["cron_schedule"], changed["jitter_seconds"], changed["max_retries"]) == (
            "15 * * * *", 0.0, 2,
        )  # fmt: skip
        with pytest.raises(ValidationError) as bad:
            client.update(job_id, next_fire_at=datetime.now(UTC))
        assert bad.value.field == "next_fire_at"
        with pytest.raises(ValidationError):
            client.update(job_id)
        assert client.purge(job_id) == {"job_id": job_id, "purged": True}
        with pytest.raises(NotFoundError):
            client.job(job_id)
        one_shot = client.submit("p", "later", next_fire_at=datetime.now(UTC) + timedelta(hours=1))
        with pytest.raises(ConflictError):
            client.trigger(one_shot["job_id"])
        assert client.delete(one_shot["job_id"])["status"] == "CANCELLED"


def test_cli_control_commands(server: ServerHandle) -> None:
    user = _user()
    job = _cli_json(server, user, "submit", "tick", "-p", "cli", "--cron", "0 * * * *",
                    "--overlap", "buffer_one", "--jitter", "2", "--max-fires", "5",
                    "--idempotency-key", "cli-key")  # fmt: skip
    assert (job["overlap"], job["jitter_seconds"], job["max_fires"]) == ("buffer_one", 2.0, 5)
    job_id = job["job_id"]
    again = _cli_json(server, user, "submit", "tick", "-p", "cli", "--cron", "0 * * * *",
                      "--overlap", "buffer_one", "--jitter", "2", "--max-fires", "5",
                      "--idempotency-key", "cli-key")  # fmt: skip
    assert again["job_id"] == job_id
    assert _cli_json(server, user, "pause", job_id)["status"] == "PAUSED"
    shown = _cli(server, user, "job", job_id)
    assert shown.exit_code == 0 and "Paused fire" in shown.output and "buffer_one" in shown.output
    assert _cli_json(server, user, "resume", "--catch-up", job_id)["status"] == "PENDING"
    triggered = _cli(server, user, "trigger", job_id)
    assert triggered.exit_code == 0 and "Triggered job" in triggered.output, triggered.output
    edited = _cli_json(
        server, user, "edit", job_id, "--misfire", "skip", "--clear", "jitter_seconds"
    )
    assert (edited["misfire"], edited["jitter_seconds"], edited["overlap"]) == (
        "skip", 0.0, "buffer_one",
    )  # fmt: skip
    clash = _cli(server, user, "edit", job_id, "--jitter", "1", "--clear", "jitter_seconds")
    assert clash.exit_code == 2
    refused = _cli(server, user, "edit", job_id, "--at", "2030-01-01T00:00:00Z")
    assert refused.exit_code == 1 and "next_fire_at" in refused.output
    table = wait_for(lambda: (r := _cli(server, user, "fires", job_id)).exit_code == 0
                     and "COMPLETED" in r.output and r.output, 15)  # fmt: skip
    assert table and "yes" in table  # the manual fire
    listed = _cli_json(server, user, "fires", job_id, "--from", "2020-01-01T00:00:00Z")
    assert listed and listed[0]["manual"] is True
    bad = _cli(server, user, "fires", job_id, "--from", "yesterday")
    assert bad.exit_code == 1 and "from" in bad.output
    purged = _cli(server, user, "delete", job_id, "--purge")
    assert purged.exit_code == 0 and "Purged" in purged.output
    assert _cli(server, user, "job", job_id).exit_code == 1
    one_shot = _cli_json(server, user, "submit", "x", "-p", "cli", "--at", "2030-01-01T00:00:00Z")
    assert _cli(server, user, "trigger", one_shot["job_id"]).exit_code == 1
    cancelled = _cli(server, user, "delete", one_shot["job_id"])
    assert cancelled.exit_code == 0 and "CANCELLED" in cancelled.output
