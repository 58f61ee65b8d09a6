"""Idempotency keys against a running server (issue 9.7): the same key and body answer
200 with the original job, another body 409; keys are per user; batch items carry their
own; concurrent duplicates make one job. SQLite here (direct ingestion)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .helpers import assert_error, list_jobs, make_client, new_user
from .store_params import store_server  # noqa: F401 - fixture "server": SQLite and PostgreSQL

if TYPE_CHECKING:
    import httpx

    from .conftest import ServerHandle

BODY = {"project_id": "idem", "payload": "hello", "cron_schedule": "0 3 * * *", "max_retries": 3}


@pytest.fixture
def api(server: ServerHandle) -> Iterator[httpx.Client]:
    with make_client(server.url, new_user("idem")) as client:
        yield client


def _post(api: httpx.Client, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.post("/v1/jobs", json=body, headers=headers)


def test_same_key_same_body_returns_the_original_job(api: httpx.Client) -> None:
    first = _post(api, BODY, "nightly-report")
    assert first.status_code == 201, first.text
    job = first.json()
    assert job["idempotency_key"] == "nightly-report"
    # the same submission spelled differently: field order, 3.0 for 3, the key as a field
    respelled = {**dict(reversed(list(BODY.items()))), "max_retries": 3.0,
                 "idempotency_key": "nightly-report"}  # fmt: skip
    for again in (_post(api, BODY, "nightly-report"), _post(api, respelled)):
        assert again.status_code == 200, again.text
        assert again.json() == job
    assert [j["job_id"] for j in list_jobs(api)] == [job["job_id"]]


def test_same_key_another_body_is_409(api: httpx.Client) -> None:
    assert _post(api, BODY, "k-409").status_code == 201
    for change in ({"payload": "other"}, {"max_retries": 4}, {"overlap": "allow"},
                   {"cron_schedule": "0 4 * * *"}):  # fmt: skip
        error = assert_error(_post(api, {**BODY, **change}, "k-409"), 409,
                             "idempotency_key_reused", field="Idempotency-Key")  # fmt: skip
        assert "another submission" in error["message"]
    as_field = _post(api, {**BODY, "payload": "other", "idempotency_key": "k-409"})
    assert_error(as_field, 409, "idempotency_key_reused", field="idempotency_key")
    assert len(list_jobs(api)) == 1


def test_keys_are_per_user(server: ServerHandle, api: httpx.Client) -> None:
    mine = _post(api, BODY, "shared-key").json()
    with make_client(server.url, new_user("other")) as other:
        theirs = _post(other, {**BODY, "payload": "different"}, "shared-key")
        assert theirs.status_code == 201, theirs.text
        assert theirs.json()["job_id"] != mine["job_id"]
        assert other.get(f"/v1/jobs/{mine['job_id']}").status_code == 404


def test_unicode_keys_round_trip_and_header_field_must_agree(api: httpx.Client) -> None:
    key = "rapport-quotidien-été-✓ \u2028 tab\tend"
    job = _post(api, {**BODY, "idempotency_key": key})
    assert job.status_code == 201 and job.json()["idempotency_key"] == key
    assert _post(api, {**BODY, "idempotency_key": key}).status_code == 200
    assert_error(_post(api, {**BODY, "idempotency_key": "a"}, "b"), 400, field="idempotency_key")
    assert _post(api, {**BODY, "idempotency_key": "c"}, "c").status_code == 201
    assert_error(_post(api, BODY, "k" * 256), 400, field="Idempotency-Key")


def test_seed_submit_replays_too(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": "seed-key"}
    first = api.post("/submit", json={"project_id": "s", "payload": "x"}, headers=headers)
    again = api.post("/submit", json={"project_id": "s", "payload": "x"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["job_id"] == again.json()["job_id"]
    other = api.post("/submit", json={"project_id": "s", "payload": "y"}, headers=headers)
    assert_error(other, 409, "idempotency_key_reused")


def test_batch_items_carry_their_own_keys(api: httpx.Client) -> None:
    items = [{**BODY, "idempotency_key": f"b{i}"} for i in range(3)]
    first = api.post("/v1/jobs:batch", json={"jobs": items})
    assert first.status_code == 201, first.text
    ids = [j["job_id"] for j in first.json()["items"]]
    replay = api.post("/v1/jobs:batch", json={"jobs": items})
    assert replay.status_code == 200 and [j["job_id"] for j in replay.json()["items"]] == ids
    mixed = api.post("/v1/jobs:batch", json={"jobs": [items[1], {**BODY, "payload": "new"}]})
    assert mixed.status_code == 201
    assert mixed.json()["items"][0]["job_id"] == ids[1]
    assert mixed.json()["items"][1]["job_id"] not in ids
    conflict = api.post("/v1/jobs:batch", json={"jobs": [
        {**BODY, "payload": "fresh", "idempotency_key": "b-new"},
        {**items[2], "payload": "changed"},
    ]})  # fmt: skip
    assert_error(conflict, 409, "idempotency_key_reused", field="jobs[1].idempotency_key")
    twice = api.post("/v1/jobs:batch", json={"jobs": [items[0], items[0]]})
    assert_error(twice, 400, field="jobs[1].idempotency_key")
    header = api.post("/v1/jobs:batch", json={"jobs": [BODY]}, headers={"Idempotency-Key": "h"})
    assert_error(header, 400, field="Idempotency-Key")
    assert len(list_jobs(api)) == 4  # 3 + the one new item; the refused batches made none


def test_concurrent_duplicates_make_one_job(api: httpx.Client) -> None:
    """Twenty clients send the same keyed submission at once: one job, every answer
    names it (201 once, 200 for the rest)."""
    barrier = threading.Barrier(20)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        r = _post(api, {**BODY, "payload": "race"}, "racing-key")
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(answers) == 20
    assert all(r.status_code in (200, 201) for r in answers), [r.text for r in answers]
    assert {r.json()["job_id"] for r in answers} == {list_jobs(api)[0]["job_id"]}
    assert sum(r.status_code == 201 for r in answers) >= 1
    assert len(list_jobs(api)) == 1


def test_concurrent_different_bodies_one_wins(api: httpx.Client) -> None:
    """Same key, different bodies, at once: one job; the others get 409 or (a replay of
    the winner's body) 200 — never a second job."""
    barrier = threading.Barrier(10)
    codes: list[int] = []

    def send(i: int) -> None:
        barrier.wait()
        codes.append(_post(api, {**BODY, "payload": f"body-{i % 2}"}, "contested").status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(codes) == 10 and set(codes) <= {200, 201, 409}, codes
    assert 409 in codes
    assert len(list_jobs(api)) == 1


def test_purged_job_frees_its_key(api: httpx.Client) -> None:
    job = _post(api, BODY, "reusable").json()
    assert api.delete(f"/v1/jobs/{job['job_id']}?purge=true").status_code == 200
    again = _post(api, {**BODY, "payload": "new life"}, "reusable")
    assert again.status_code == 201, again.text
