"""Payloads over 1 KiB: offloaded to the blob store (upload/download counted on
/metrics), executed in full, and returned unchanged by the API."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import TYPE_CHECKING

from tests.support.metrics import metric_sum, scrape
from tests.support.waiting import wait_for

from .helpers import RUN_TERMINAL, get_job, make_client, new_user, submit, wait_runs

if TYPE_CHECKING:
    from .conftest import ServerHandle

S3 = "s3_operations_total"


def _terminal(runs: list[dict]) -> bool:  # type: ignore[type-arg]
    return bool(runs) and all(r["status"] in RUN_TERMINAL for r in runs)


def _script(marker: str) -> tuple[str, str]:
    """A bash script over 1 KiB and the output it must print."""
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        "# A script long enough to be offloaded; the seed's TestShellScriptExecution.",
        "total=0",
        "for i in $(seq 1 100); do total=$((total + i)); done",
        'echo "sum=${total}"',
        "declare -a fruits=(apple banana cherry)",
        'for f in "${fruits[@]}"; do echo "fruit=${f}"; done',
        f'echo "marker={marker}"',
    ]
    expected = ["sum=5050", "fruit=apple", "fruit=banana", "fruit=cherry", f"marker={marker}"]
    for n in range(1, 31):
        lines.append(f'echo "line {n:02d}: $(( {n} * {n} ))"  # padding so the script is long')
        expected.append(f"line {n:02d}: {n * n}")
    script = "\n".join(lines) + "\n"
    assert len(script.encode()) > 1024
    return script, "\n".join(expected) + "\n"


def test_large_shell_script_is_offloaded_and_runs(server: ServerHandle) -> None:
    marker = uuid.uuid4().hex
    script, expected = _script(marker)
    encoded = base64.b64encode(script.encode()).decode()
    payload = f"cmd:echo {encoded} | base64 -d | bash"
    assert len(payload.encode()) > 1024

    before = scrape(server.url)
    with make_client(server.url, new_user("big")) as api:
        job_id = submit(api, project_id="scripts", payload=payload, timeout_seconds=30)
        after_submit = scrape(server.url)
        assert metric_sum(after_submit, S3, operation="upload") >= (
            metric_sum(before, S3, operation="upload") + 1
        ), "a payload over 1 KiB must be uploaded to the blob store before 201"

        runs = wait_runs(api, job_id, _terminal, 15, "a terminal run")
        assert len(runs) == 1, runs
        run = runs[0]
        assert run["status"] == "COMPLETED", run
        assert run["exit_code"] == 0, run
        assert run["output"] == expected, run["output"]

        downloaded = wait_for(
            lambda: (
                metric_sum(scrape(server.url), S3, operation="download")
                >= metric_sum(before, S3, operation="download") + 1
            ),
            5,
        )
        assert downloaded, "the worker must download the offloaded payload"

        # The API gives back the original payload, byte for byte, on every route.
        seed_view = api.get("/job", params={"id": job_id}).json()
        assert seed_view["payload"] == payload
        job = get_job(api, job_id)
        assert (
            hashlib.sha256(job["payload"].encode()).hexdigest()
            == hashlib.sha256(payload.encode()).hexdigest()
        )
        # a list never fetches offloaded payloads (bounded responses): it says where they are
        listed = api.get("/v1/jobs").json()["items"]
        (item,) = [j for j in listed if j["job_id"] == job_id]
        assert (item["payload"], item["payload_offloaded"]) == (None, True)
        assert item["payload_size"] == len(payload.encode())


def test_2kib_plain_payload_is_echoed_in_full(server: ServerHandle) -> None:
    seed = uuid.uuid4().hex
    payload = ("".join(f"{i:04d}:{seed}|" for i in range(60)))[:2048]
    assert len(payload) == 2048
    before = scrape(server.url)
    with make_client(server.url, new_user("big")) as api:
        job_id = submit(api, payload=payload)
        assert metric_sum(scrape(server.url), S3, operation="upload") >= (
            metric_sum(before, S3, operation="upload") + 1
        )
        runs = wait_runs(api, job_id, _terminal, 10, "a terminal run")
        assert runs[0]["status"] == "COMPLETED", runs
        expected = "Success: " + payload  # over a list's 2,048 characters: read it whole
        assert runs[0]["output_truncated"] is True
        assert runs[0]["output"] == expected[:2048]
        whole = api.get(f"/v1/jobs/{job_id}/runs/{runs[0]['run_id']}/output")
        assert whole.status_code == 200 and whole.text == expected
        assert api.get("/job", params={"id": job_id}).json()["payload"] == payload


def test_small_payload_is_not_offloaded(server: ServerHandle) -> None:
    payload = "x" * 1000
    before = metric_sum(scrape(server.url), S3, operation="upload")
    with make_client(server.url, new_user("small")) as api:
        job_id = submit(api, payload=payload)
        runs = wait_runs(api, job_id, _terminal, 10, "a terminal run")
        assert runs[0]["output"] == "Success: " + payload
    assert metric_sum(scrape(server.url), S3, operation="upload") == before


def test_multibyte_payload_round_trips(server: ServerHandle) -> None:
    payload = "zürich-東京-🚀 " * 120  # > 1 KiB in UTF-8
    with make_client(server.url, new_user("utf8")) as api:
        job_id = submit(api, payload=payload)
        runs = wait_runs(api, job_id, _terminal, 10, "a terminal run")
        assert runs[0]["output"] == "Success: " + payload
        assert get_job(api, job_id)["payload"] == payload
