"""Untrusted job output never wedges recording, on SQLite and on PostgreSQL.

A job may print anything: NUL bytes (PostgreSQL ``text`` refuses them), bytes that
are not UTF-8 (every engine refuses them), control codes. Each run must complete
with its output made visible (NUL as ``␀``, bad bytes as U+FFFD, control codes
kept), and a plain job submitted after it must run normally — before the fix one
such outcome failed its whole batch forever and stalled the worker.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from tests.support.postgres import create_database, drop_database

from .helpers import RUN_TERMINAL, make_client, new_user, submit, wait_runs

if TYPE_CHECKING:
    from .conftest import ServerFactory, ServerHandle

ADMIN_DSN = os.environ.get(
    "CHRONOQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)

CASES = [
    pytest.param("cmd:printf 'a\\000b'", "a\u2400b", id="nul"),
    pytest.param("cmd:printf 'x\\377\\376y'", "x\ufffd\ufffdy", id="invalid-utf8"),
    pytest.param("cmd:printf '\\001\\033[31mred\\r\\n'", "\x01\x1b[31mred\r\n", id="control"),
    pytest.param(
        "cmd:printf 'ok\\000\\300\\n'; exit 4", "ok\u2400\ufffd\n", id="nul-bad-bytes-failed"
    ),
]


def _postgres_reachable() -> str | None:
    async def probe() -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {ADMIN_DSN} is not reachable: {exc!r}"
    return None


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    """A fresh database on the test PostgreSQL server for this module; dropped afterwards."""
    problem = _postgres_reachable()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    name = f"untrusted_{uuid.uuid4().hex[:10]}"
    dsn = create_database(ADMIN_DSN, name)
    try:
        yield dsn
    finally:
        drop_database(ADMIN_DSN, name)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store_server(
    request: pytest.FixtureRequest, module_server_factory: ServerFactory
) -> ServerHandle:
    """``chronoq up`` on the embedded SQLite store, or on PostgreSQL (``--store``)."""
    if request.param == "sqlite":
        return module_server_factory(name="sqlite")
    dsn = request.getfixturevalue("postgres_dsn")
    return module_server_factory("--store", dsn, name="postgres")


def _ended(runs: list[dict[str, Any]]) -> bool:
    return bool(runs) and all(r["status"] in RUN_TERMINAL for r in runs)


@pytest.mark.parametrize(("payload", "shown"), CASES)
def test_output_is_recorded_visibly_and_the_next_job_runs(
    store_server: ServerHandle, payload: str, shown: str
) -> None:
    with make_client(store_server.url, new_user("bytes")) as api:
        job_id = submit(api, payload=payload)
        (run,) = wait_runs(api, job_id, _ended, 20, "the run to end")
        failed = "exit" in payload
        assert run["status"] == ("FAILED" if failed else "COMPLETED"), run
        assert run["output"] == shown, run
        assert run["exit_code"] == (4 if failed else 0), run
        assert run["started_at"] is not None and run["interruptions"] == 0, run
        after = submit(api, payload="cmd:echo plain")
        (plain,) = wait_runs(api, after, _ended, 20, "the plain job after it")
        assert (plain["status"], plain["output"]) == ("COMPLETED", "plain\n"), plain


def test_many_bad_outputs_at_once_do_not_block_good_ones(store_server: ServerHandle) -> None:
    """Bad and good outputs ending together share outcome batches; all are recorded."""
    with make_client(store_server.url, new_user("bytes")) as api:
        r = api.post(
            "/v1/jobs:batch",
            json={
                "jobs": [
                    {"project_id": "b", "payload": f"cmd:printf '{i}\\000\\377'"}
                    if i % 2
                    else {"project_id": "b", "payload": f"cmd:echo good {i}"}
                    for i in range(40)
                ]
            },
        )
        assert r.status_code == 201, r.text
        ids = [job["job_id"] for job in r.json()["items"]]
        for i, job_id in enumerate(ids):
            (run,) = wait_runs(api, job_id, _ended, 30, f"job {i} to end")
            expected = f"{i}\u2400\ufffd" if i % 2 else f"good {i}\n"
            assert (run["status"], run["output"]) == ("COMPLETED", expected), run
