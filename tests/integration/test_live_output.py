"""The output of a running job, streamed live (issue 10.3): ``GET /v1/runs/{id}/output/stream``
against a running server, on SQLite and on PostgreSQL, and with the roles as separate
processes (the api reads what a worker process published through the store). The job
prints a line, waits for a marker file the test creates only once that line has arrived,
then prints another: so the first line provably came while the run was RUNNING. Then the
stream is resumed with ``Last-Event-ID``; the Python client and ``chronoq logs``; and the
edges: another user's run, a bad offset."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from chronoq.cli.main import main as cli
from chronoq.client import Client
from chronoq.client_live import CAUGHT_UP
from chronoq.services.api.live_stream import MAX_STREAMS_PER_USER
from tests.support.postgres import create_database, drop_database
from tests.support.processes import free_port
from tests.support.waiting import wait_for

from .auth_support import postgres_problem
from .helpers import create, get_runs, make_client, new_user
from .store_params import (
    ADMIN_DSN,
    store_server,  # noqa: F401 - fixture "server": SQLite and PostgreSQL
)
from .test_distributed import FAST, Processes, _healthy

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerFactory, ServerHandle

pytestmark = pytest.mark.slow


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    id: str | None
    data: dict[str, Any]


def read_events(response: httpx.Response) -> Iterator[Event]:
    """Server-sent events, as a browser's EventSource would split them."""
    kind, event_id, data = "message", None, []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield Event(kind, event_id, json.loads("\n".join(data)))
            kind, event_id, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)


@pytest.fixture
def marker_dir() -> Iterator[Path]:
    """A folder the job's user can see into (shell jobs run as ``nobody`` under root)."""
    folder = Path(tempfile.mkdtemp(prefix="chronoq-live-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _waiting_job(api: httpx.Client, marker: Path) -> tuple[str, str]:
    script = (
        "echo first-line; i=0; "
        f"while [ ! -e {marker} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; "
        "echo second-line"
    )
    job = create(api, payload=f"cmd:{script}")
    runs = wait_for(lambda: get_runs(api, job["job_id"]), 15)
    assert runs, "the job never got a run"
    return job["job_id"], runs[0]["run_id"]


def _run_status(api: httpx.Client, job_id: str) -> str:
    return str(get_runs(api, job_id)[0]["status"])


def test_the_first_line_arrives_while_the_run_runs_then_the_end(
    server: ServerHandle, marker_dir: Path
) -> None:
    marker = marker_dir / "go"
    with make_client(server.url, new_user("live"), timeout=20) as api:
        job_id, run_id = _waiting_job(api, marker)
        text, first_id, end = "", None, None
        with api.stream("GET", f"/v1/runs/{run_id}/output/stream") as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for event in read_events(response):
                if event.kind == "output":
                    assert int(event.data["start"]) == len(text.encode())  # nothing missed
                    text += event.data["text"]
                    assert event.id == str(len(text.encode()))
                    if first_id is None and "first-line" in text:
                        first_id = event.id
                        assert _run_status(api, job_id) == "RUNNING"  # it waits for us
                        assert "second-line" not in text
                        marker.touch()
                elif event.kind == "end":
                    end = event
                    break
        assert first_id is not None, text
        assert end is not None and end.data["status"] == "COMPLETED", end
        assert end.data["exit_code"] == 0
        assert text == "first-line\nsecond-line\n"
        assert end.id == str(len(text.encode()))

        # Resume after the first line: only what came after it, then the end at once.
        resumed = api.get(f"/v1/runs/{run_id}/output/stream", headers={"Last-Event-ID": first_id})
        events = list(read_events(resumed))
        assert [e.kind for e in events] == ["output", "end"], events
        assert events[0].data == {"start": int(first_id), "text": "second-line\n"}
        assert events[1].data["status"] == "COMPLETED"

        # A finished run from the start: the whole output and the end.
        events = list(read_events(api.get(f"/v1/runs/{run_id}/output/stream")))
        assert "".join(e.data["text"] for e in events if e.kind == "output") == text


def test_another_users_run_and_bad_offsets_are_refused(
    server: ServerHandle, marker_dir: Path
) -> None:
    with make_client(server.url, new_user("live")) as api:
        job = create(api, payload="cmd:echo mine")
        runs = wait_for(lambda: get_runs(api, job["job_id"]), 15)
        run_id = runs[0]["run_id"]
        with make_client(server.url, new_user("other")) as other:
            r = other.get(f"/v1/runs/{run_id}/output/stream")
            assert r.status_code == 404, r.text
        for bad in ("-1", "9110261815940714"):  # 16 digits: past the schema's 15
            r = api.get(f"/v1/runs/{run_id}/output/stream", headers={"Last-Event-ID": bad})
            assert r.status_code == 400 and r.json()["error"]["field"] == "Last-Event-ID"
        r = api.get("/v1/runs/not-a-uuid/output/stream")
        assert r.status_code == 400 and r.json()["error"]["field"] == "run_id"


def _follow_first_line_then_end(api: httpx.Client, marker: Path) -> None:
    """The first line while RUNNING, then (marker made) the rest and the end."""
    job_id, run_id = _waiting_job(api, marker)
    text, end = "", None
    with api.stream("GET", f"/v1/runs/{run_id}/output/stream") as response:
        assert response.status_code == 200, response.read()
        for event in read_events(response):
            if event.kind == "output":
                text += event.data["text"]
                if "first-line" in text and not marker.exists():
                    assert _run_status(api, job_id) == "RUNNING"
                    marker.touch()
            elif event.kind == "end":
                end = event
                break
    assert end is not None and end.data["status"] == "COMPLETED", (end, text)
    assert text == "first-line\nsecond-line\n"


def test_with_the_roles_as_separate_processes(tmp_path: Path, marker_dir: Path) -> None:
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    name = f"live_{uuid.uuid4().hex[:10]}"
    dsn = create_database(ADMIN_DSN, name)
    processes = Processes(tmp_path)
    try:
        port = free_port()
        common = ["--store", dsn, *FAST]
        processes.start("api", "api", "--port", str(port), "--node-id", "api-1", *common)
        processes.start("coord", "coordinator", "--node-id", "coord-1", *common)
        processes.start("picker", "picker", "--node-id", "picker-1", *common)
        processes.start("worker", "worker", "--node-id", "worker-1", *common)
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _healthy(url), 30), processes.logs()
        with make_client(url, new_user("roles"), timeout=20) as api:
            _follow_first_line_then_end(api, marker_dir / "go")
    finally:
        processes.close()
        drop_database(ADMIN_DSN, name)


def test_the_client_and_chronoq_logs_follow_a_run(server: ServerHandle, marker_dir: Path) -> None:
    marker = marker_dir / "go"
    user = new_user("logs")
    with make_client(server.url, user, timeout=20) as api:
        _, run_id = _waiting_job(api, marker)
    with Client(server.url, user_id=user) as client:
        text, kinds = "", []
        for event in client.follow_output(run_id):
            kinds.append(event["event"])
            if event is CAUGHT_UP:
                continue
            if event["event"] == "output":
                text += event["text"]
                if "first-line" in text:
                    marker.touch()
        assert kinds[-1] == "end" and event["status"] == "COMPLETED", kinds
        assert text == "first-line\nsecond-line\n"
        assert "caught-up" in kinds  # sent once, after what a running run had so far

    runner = CliRunner()
    args = ["--url", server.url, "--user", user]
    done = runner.invoke(cli, ["logs", run_id, *args])
    assert done.exit_code == 0, done.output
    assert done.output == "first-line\nsecond-line\n"
    followed = runner.invoke(cli, ["logs", "--follow", run_id, *args])
    assert followed.exit_code == 0 and followed.output == done.output

    with make_client(server.url, user) as api:
        failing = create(api, payload="cmd:echo oops; exit 3")
        runs = wait_for(lambda: get_runs(api, failing["job_id"]), 15)
    failed = runner.invoke(cli, ["logs", "-f", runs[0]["run_id"], *args])
    assert failed.exit_code == 1, failed.output
    assert "oops" in failed.output and "FAILED" in failed.output
    missing = runner.invoke(cli, ["logs", str(uuid.uuid4()), *args])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_streams_per_user_are_bounded_and_freed_when_clients_leave(
    server: ServerHandle, marker_dir: Path
) -> None:
    marker = marker_dir / "go"
    with make_client(server.url, new_user("many"), timeout=20) as api:
        _, run_id = _waiting_job(api, marker)
        path = f"/v1/runs/{run_id}/output/stream"
        with contextlib.ExitStack() as streams:
            for _ in range(MAX_STREAMS_PER_USER):
                opened = streams.enter_context(api.stream("GET", path))
                assert opened.status_code == 200
            refused = api.get(path)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "too_many_streams"
            assert int(refused.headers["Retry-After"]) >= 1
        # Every client went away: the server notices and frees their places.
        assert wait_for(lambda: _opens(api, path), 10), "streams of gone clients still counted"
        marker.touch()


def _opens(api: httpx.Client, path: str) -> bool:
    with api.stream("GET", path) as response:
        return response.status_code == 200


def test_an_open_stream_does_not_hold_up_a_graceful_stop(
    server_factory: ServerFactory, marker_dir: Path
) -> None:
    handle = server_factory("--shutdown-grace", "0", name="stopping")  # the job: killed at once
    with make_client(handle.url, new_user("stop"), timeout=20) as api:
        _, run_id = _waiting_job(api, marker_dir / "never")
        with api.stream("GET", f"/v1/runs/{run_id}/output/stream") as response:
            assert response.status_code == 200
            events = read_events(response)
            assert "first-line" in next(e for e in events if e.kind == "output").data["text"]
            started = time.monotonic()
            assert handle.stop() == 0, handle.log_tail()
            assert time.monotonic() - started < 4, "the stream held the stop up"
            assert list(events) == []  # closed without an end: the reader reconnects
    assert "Exception in ASGI application" not in handle.log_tail()
