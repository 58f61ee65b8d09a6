"""Store contract: idempotency keys — unique per user while kept, looked up by key,
forgotten by retention, and any Unicode text but NUL round-trips exactly (issue 9)."""

from __future__ import annotations

import pytest

from chronoq.errors import ConflictError
from chronoq.ports.store import Store

from .helpers import T0, at, job_now, make_job, policy_job


async def test_a_job_is_found_by_its_key(store: Store) -> None:
    job = policy_job(idempotency_key="order-42", request_hash="h1")
    await store.insert_jobs([job])

    found = await store.job_by_idempotency_key("alice", "order-42")

    assert found == await job_now(store, job)
    assert found is not None
    assert (found.idempotency_key, found.request_hash) == ("order-42", "h1")
    assert await store.job_by_idempotency_key("alice", "order-43") is None
    assert await store.job_by_idempotency_key("alice", "ORDER-42") is None  # exact, not folded


async def test_a_duplicate_key_is_a_conflict_and_inserts_nothing(store: Store) -> None:
    first = policy_job(idempotency_key="k")
    await store.insert_jobs([first])
    fresh, dup = make_job(), policy_job(idempotency_key="k", request_hash="other")

    with pytest.raises(ConflictError):
        await store.insert_jobs([fresh, dup])
    with pytest.raises(ConflictError):  # two in one batch
        await store.insert_jobs([policy_job(idempotency_key="n"), policy_job(idempotency_key="n")])

    assert await store.existing_job_ids([fresh.job_id, dup.job_id]) == set()
    assert await store.job_by_idempotency_key("alice", "n") is None
    assert await store.job_by_idempotency_key("alice", "k") == await job_now(store, first)


async def test_if_absent_skips_a_duplicate_key_and_inserts_the_rest(store: Store) -> None:
    first = policy_job(idempotency_key="k")
    await store.insert_jobs([first])
    fresh, dup = make_job(), policy_job(idempotency_key="k")

    await store.insert_jobs([dup, fresh], if_absent=True)

    assert await store.existing_job_ids([fresh.job_id, dup.job_id]) == {fresh.job_id}
    assert await store.job_by_idempotency_key("alice", "k") == await job_now(store, first)


async def test_keys_are_scoped_per_user(store: Store) -> None:
    mine, theirs = (
        policy_job(idempotency_key="same"),
        policy_job(idempotency_key="same", user_id="bob"),
    )
    await store.insert_jobs([mine])

    await store.insert_jobs([theirs])

    assert await store.job_by_idempotency_key("alice", "same") == await job_now(store, mine)
    assert await store.job_by_idempotency_key("bob", "same") == await job_now(store, theirs)
    assert await store.job_by_idempotency_key("carol", "same") is None


async def test_jobs_without_keys_never_collide(store: Store) -> None:
    await store.insert_jobs([make_job(), make_job()])
    await store.insert_jobs([policy_job(idempotency_key=None)])


async def test_forgotten_keys_are_free_again(store: Store) -> None:
    old = policy_job(idempotency_key="a", request_hash="h", created_at=T0)
    older = policy_job(idempotency_key="b", created_at=at(-10))
    young = policy_job(idempotency_key="c", created_at=at(100))
    plain = make_job(created_at=at(-20))
    await store.insert_jobs([old, older, young, plain])

    assert await store.forget_idempotency_keys(at(50), limit=1) == 1  # the oldest first
    assert await store.job_by_idempotency_key("alice", "b") is None
    assert await store.forget_idempotency_keys(at(50)) == 1
    assert await store.forget_idempotency_keys(at(50)) == 0

    assert await store.job_by_idempotency_key("alice", "a") is None
    forgotten = await job_now(store, old)  # the job itself stays
    assert (forgotten.idempotency_key, forgotten.request_hash) == (None, None)
    assert await store.job_by_idempotency_key("alice", "c") == await job_now(store, young)
    again = policy_job(idempotency_key="a")
    await store.insert_jobs([again])
    assert await store.job_by_idempotency_key("alice", "a") == await job_now(store, again)


ODD_KEYS = [
    "🚀 deploy 🧑🏽‍💻",
    "\uffff",
    "\u202eevil\u202c\u200f",
    "k" * 199 + "é",
    "tab\tnew\nline\r",
    "\u0085\u00a0 spaced ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢" * 20,
]


@pytest.mark.parametrize("key", ODD_KEYS)
async def test_keys_with_odd_unicode_round_trip(store: Store, key: str) -> None:
    job = policy_job(idempotency_key=key)
    other = policy_job(idempotency_key=key + "x")
    await store.insert_jobs([job, other])

    found = await store.job_by_idempotency_key("alice", key)

    assert found is not None
    assert found.job_id == job.job_id
    assert found.idempotency_key == key
    assert (await job_now(store, job)).idempotency_key == key
    with pytest.raises(ConflictError):
        await store.insert_jobs([policy_job(idempotency_key=key)])
