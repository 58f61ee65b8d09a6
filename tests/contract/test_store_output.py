"""Store contract: run output is read in bounded pieces. A run list carries only the start
of each output (``output_chars`` characters, flagged ``output_truncated``), so a page of
1,000 runs of 1 MiB never loads 1 GiB; ``read_output`` returns any slice, by characters
(not bytes), and only to the job's owner."""

from __future__ import annotations

import uuid

import pytest

from chronoq.domain.jobs import LIST_OUTPUT_CHARS
from chronoq.domain.states import RunStatus
from chronoq.ports.store import Store

from .helpers import T0, claim_due, make_job, outcome, output_of, submit_and_lease

TEXT = "é∑🙂x\x01" * 100_000  # 500,000 characters of 1-4 bytes each, a control among them


async def _run_with(store: Store, text: str, user: str = "alice") -> tuple[str, str, str]:
    job = make_job(user_id=user)
    claimed = await submit_and_lease(store, job, "w1", started=True)
    assert await store.complete_runs([outcome(claimed, RunStatus.COMPLETED, output=text)])
    return job.user_id, job.job_id, claimed.run_id


@pytest.mark.parametrize(
    ("length", "cut"),
    [(0, False), (10, False), (LIST_OUTPUT_CHARS, False), (LIST_OUTPUT_CHARS + 1, True),
     (len(TEXT), True)],
)  # fmt: skip
async def test_a_run_list_carries_at_most_output_chars_of_each_output(
    store: Store, length: int, cut: bool
) -> None:
    user, job_id, _ = await _run_with(store, TEXT[:length])

    (run,) = await store.list_runs(user, job_id)
    assert run.output == TEXT[: min(length, LIST_OUTPUT_CHARS)]
    assert run.output_truncated is cut

    (small,) = await store.list_runs(user, job_id, output_chars=7)
    assert small.output == TEXT[: min(length, 7)]
    assert small.output_truncated is (length > 7)


async def test_slices_of_an_output_join_to_the_whole_by_characters(store: Store) -> None:
    user, job_id, run_id = await _run_with(store, TEXT)

    pieces, start = [], 0
    while piece := await store.read_output(user, job_id, run_id, start, 150_001):
        pieces.append(piece)
        start += len(piece)
    assert "".join(pieces) == TEXT
    assert await store.read_output(user, job_id, run_id, 3, 2) == TEXT[3:5]
    assert await store.read_output(user, job_id, run_id, len(TEXT) - 1, 10) == TEXT[-1:]
    assert await store.read_output(user, job_id, run_id, len(TEXT) + 5, 10) == ""


async def test_only_the_owner_reads_an_output_through_the_right_job(store: Store) -> None:
    user, job_id, run_id = await _run_with(store, "secret")
    other_user, other_job, _ = await _run_with(store, "other", user="bob")

    assert await store.read_output(user, job_id, run_id, 0, 100) == "secret"
    assert await store.read_output(other_user, job_id, run_id, 0, 100) is None
    assert await store.read_output(user, other_job, run_id, 0, 100) is None
    assert await store.read_output(user, job_id, str(uuid.uuid4()), 0, 100) is None
    assert await store.read_output(user, job_id, "not-a-run", 0, 100) is None


async def test_a_run_without_output_yet_reads_as_empty(store: Store) -> None:
    job = make_job()
    await store.insert_jobs([job])
    (run,) = await claim_due(store, T0)
    assert await output_of(store, job, run.run_id) == ""
