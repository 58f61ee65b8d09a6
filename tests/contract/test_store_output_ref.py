"""Store contract: offloaded run outputs (issue 8). A worker that put a large output to the
blob store reports its head inline plus ``output_ref``; every store records the reference,
lists such a run as truncated, tells only the owner the reference, returns the references
of the runs retention deletes (their blobs go too) and answers the orphan sweep's
question "which of these runs reference which output"."""

from __future__ import annotations

import dataclasses
import uuid

from chronoq.domain.jobs import BLOB_REF_PREFIX, OUTPUT_HEAD_CHARS, output_key
from chronoq.domain.states import RunStatus
from chronoq.ports.store import Store

from .helpers import at, make_job, outcome, submit_and_lease

HEAD = "h\u00e9ad\U0001f642" * 600  # 3,000 characters: longer than the inline head


async def _offloaded(store: Store, user: str = "alice") -> tuple[str, str, str, str]:
    """A finished run whose output was offloaded: (user, job_id, run_id, ref)."""
    job = make_job(user_id=user)
    claimed = await submit_and_lease(store, job, "w1", started=True)
    ref = BLOB_REF_PREFIX + output_key(claimed.run_id, claimed.attempt)
    done = dataclasses.replace(
        outcome(claimed, RunStatus.COMPLETED, output=HEAD[:OUTPUT_HEAD_CHARS]), output_ref=ref
    )
    assert await store.complete_runs([done]) == [True]
    return job.user_id, job.job_id, claimed.run_id, ref


async def _inline(store: Store, text: str = "small") -> tuple[str, str, str]:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1", started=True)
    assert await store.complete_runs([outcome(claimed, RunStatus.COMPLETED, output=text)])
    return job.user_id, job.job_id, claimed.run_id


async def test_an_output_ref_round_trips_and_the_run_lists_as_truncated(store: Store) -> None:
    user, job_id, run_id, ref = await _offloaded(store)

    (run,) = await store.list_runs(user, job_id)
    assert run.output_ref == ref
    assert run.output_truncated is True
    assert run.output == HEAD[: min(OUTPUT_HEAD_CHARS, 2048)]
    assert await store.output_ref(user, job_id, run_id) == ref
    # the inline head stays readable as before
    assert await store.read_output(user, job_id, run_id, 0, 5) == HEAD[:5]


async def test_a_short_head_with_a_ref_still_lists_as_truncated(store: Store) -> None:
    job = make_job()
    claimed = await submit_and_lease(store, job, "w1", started=True)
    ref = BLOB_REF_PREFIX + output_key(claimed.run_id, claimed.attempt)
    done = dataclasses.replace(outcome(claimed, RunStatus.FAILED, output="tiny"), output_ref=ref)
    assert await store.complete_runs([done]) == [True]
    (run,) = await store.list_runs(job.user_id, job.job_id)
    assert (run.output, run.output_truncated, run.output_ref) == ("tiny", True, ref)


async def test_an_inline_output_has_no_ref(store: Store) -> None:
    user, job_id, run_id = await _inline(store)
    (run,) = await store.list_runs(user, job_id)
    assert (run.output_ref, run.output_truncated) == (None, False)
    assert await store.output_ref(user, job_id, run_id) is None


async def test_only_the_owner_learns_the_ref_through_the_right_job(store: Store) -> None:
    user, job_id, run_id, ref = await _offloaded(store)
    _, bob_job, _, _ = await _offloaded(store, user="bob")

    assert await store.output_ref(user, job_id, run_id) == ref
    assert await store.output_ref("bob", job_id, run_id) is None
    assert await store.output_ref(user, bob_job, run_id) is None
    assert await store.output_ref(user, job_id, str(uuid.uuid4())) is None
    assert await store.output_ref(user, "not-a-job", "not-a-run") is None


async def test_purge_returns_the_output_refs_of_the_runs_it_deletes(store: Store) -> None:
    _, _, _, ref = await _offloaded(store)
    _inline_user, _inline_job, _ = await _inline(store)

    refs = await store.purge_finished(at(3600))
    assert refs == [ref]  # the inline run's deletion has no blob to remove
    assert await store.purge_finished(at(3600)) == []


async def test_output_refs_of_answers_for_existing_runs_whoever_owns_them(store: Store) -> None:
    _, _, alice_run, alice_ref = await _offloaded(store)
    _, _, bob_run, bob_ref = await _offloaded(store, user="bob")
    _, _, plain_run = await _inline(store)

    asked = [alice_run, bob_run, plain_run, str(uuid.uuid4()), "junk"]
    assert await store.output_refs_of(asked) == {alice_ref, bob_ref}
    assert await store.output_refs_of([]) == set()
    await store.purge_finished(at(3600))
    assert await store.output_refs_of(asked) == set()
