"""The run page shows a running job's output as it is made (issue 10.3 / 10.8), in a real
browser against a real ``chronoq up`` (header and token auth modes: the stream is fetched
with the session's credentials). The job prints a line, then waits for a marker file that
the test creates only after the page has shown that line, so the line provably appeared
while the run was RUNNING; then the page shows the rest and the final status."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Page, expect

from tests.integration.auth_support import bearer, make_token
from tests.integration.helpers import create, make_client, new_user, wait_runs

from .support import shot, sign_in_as, sign_in_with_token

if TYPE_CHECKING:
    import httpx

    from tests.integration.conftest import ServerFactory, ServerHandle

RUN_DONE = 15_000  # ms


@pytest.fixture(scope="module", params=["header", "token"])
def mode(request: pytest.FixtureRequest, servers: ServerFactory) -> tuple[str, ServerHandle]:
    if request.param == "header":
        return "header", servers(name="live-header")
    return "token", servers("--auth", "token", name="live-token")


@pytest.fixture
def marker() -> Iterator[Path]:
    """A marker path the job's user can see (shell jobs run as ``nobody`` under root)."""
    folder = Path(tempfile.mkdtemp(prefix="chronoq-live-browser-"))
    os.chmod(folder, 0o755)
    yield folder / "go"
    shutil.rmtree(folder, ignore_errors=True)


def _client(mode: tuple[str, ServerHandle], user: str) -> tuple[httpx.Client, str | None]:
    kind, server = mode
    if kind == "header":
        return make_client(server.url, user), None
    token = make_token(server, user, "--allow-shell")
    return bearer(server.url, token), token


def test_the_run_page_shows_the_output_live_then_the_final_status(
    page: Page, mode: tuple[str, ServerHandle], marker: Path, shots: Path
) -> None:
    kind, server = mode
    user = new_user("live")
    client, token = _client(mode, user)
    with client:
        script = (
            "echo first-line; i=0; "
            f"while [ ! -e {marker} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; "
            "echo second-line"
        )
        job = create(client, project_id="live", payload=f"cmd:{script}")
        runs = wait_runs(client, job["job_id"], lambda r: bool(r), 10, "a run")
        if token is None:
            sign_in_as(page, server, user)
        else:
            sign_in_with_token(page, server, token)
            expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
        page.goto(f"{server.url}/dashboard/#/jobs/{job['job_id']}/runs/{runs[0]['run_id']}")

        output = page.get_by_label("Run output")
        status = page.locator(".facts .badge").first
        expect(output).to_contain_text("first-line")
        expect(status).to_have_text("RUNNING")  # it is waiting for the marker: still running
        expect(output).not_to_contain_text("second-line")
        expect(page.get_by_text(re.compile(r"Running: .* \(live\)"))).to_be_visible()
        shot(page, shots, f"run-live-output-{kind}")

        marker.touch()
        expect(status).to_have_text("COMPLETED", timeout=RUN_DONE)
        expect(output).to_have_text("first-line\nsecond-line\n")
        expect(page.get_by_role("button", name="Download the whole output")).to_be_visible()
        shot(page, shots, f"run-live-output-ended-{kind}")
