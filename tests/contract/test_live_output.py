"""Store contract: the live output of a running run (``Dispatch.put_live_outputs``,
``JobStore.live_output``). A worker's window replaces the previous one only while the run
is RUNNING under that worker and attempt (compare-and-set, like outcomes); the store keeps
the newest ``LIVE_OUTPUT_BYTES`` with the byte offset where they start; the window goes
when the run leaves RUNNING or is deleted; only the run's owner reads it."""

from __future__ import annotations

import uuid

from chronoq.domain.live_output import LIVE_OUTPUT_BYTES, LiveOutput
from chronoq.domain.states import RunStatus
from chronoq.domain.text import NUL_MARK
from chronoq.ports.store import Store

from .helpers import T0, at, make_job, outcome, reap, release, submit_and_lease


def _live(run_id: str, text: str, *, start: int = 0, attempt: int = 1) -> LiveOutput:
    return LiveOutput(run_id=run_id, attempt=attempt, start=start, text=text)


async def _running(store: Store, user: str = "alice") -> tuple[str, str]:
    job = make_job(user_id=user, payload="cmd:yes")
    claimed = await submit_and_lease(store, job, "w1", started=True)
    return job.job_id, claimed.run_id


async def test_a_window_is_read_back_with_its_run_and_replaced_by_the_next(store: Store) -> None:
    job_id, run_id = await _running(store)
    seen = await store.live_output("alice", run_id)
    assert seen is not None
    assert (seen.job_id, seen.attempt, seen.status, seen.output) == (
        job_id, 1, RunStatus.RUNNING, None,
    )  # fmt: skip

    assert await store.put_live_outputs("w1", [_live(run_id, "line 1\n")]) == [True]
    assert await store.put_live_outputs("w1", [_live(run_id, "line 2\n", start=7)]) == [True]

    seen = await store.live_output("alice", run_id)
    assert seen is not None and seen.output is not None
    assert (seen.output.start, seen.output.text, seen.output.end) == (7, "line 2\n", 14)


async def test_a_stale_worker_or_attempt_writes_nothing(store: Store) -> None:
    _, run_id = await _running(store)
    assert await store.put_live_outputs("w1", [_live(run_id, "mine")]) == [True]

    assert await store.put_live_outputs("w2", [_live(run_id, "not yours")]) == [False]
    assert await store.put_live_outputs("w1", [_live(run_id, "old", attempt=2)]) == [False]
    missing = _live(str(uuid.uuid4()), "x")
    malformed = _live("not-a-run", "x")
    assert await store.put_live_outputs("w1", [missing, malformed, _live(run_id, "m2")]) == [
        False, False, True,
    ]  # fmt: skip

    seen = await store.live_output("alice", run_id)
    assert seen is not None and seen.output is not None
    assert seen.output.text == "m2"


async def test_a_run_that_is_not_running_takes_no_window(store: Store) -> None:
    job = make_job(payload="cmd:true")
    claimed = await submit_and_lease(store, job, "w1", started=True)
    assert await store.complete_runs([outcome(claimed, RunStatus.COMPLETED, output="done")])

    assert await store.put_live_outputs("w1", [_live(claimed.run_id, "late")]) == [False]
    seen = await store.live_output("alice", claimed.run_id)
    assert seen is not None
    assert (seen.status, seen.output, seen.exit_code) == (RunStatus.COMPLETED, None, 0)


async def test_only_the_newest_bytes_are_kept_with_their_offset(store: Store) -> None:
    _, run_id = await _running(store)
    head = "a" * 1000
    tail = "é" * (LIVE_OUTPUT_BYTES // 2)  # exactly LIVE_OUTPUT_BYTES bytes of 2-byte chars
    assert await store.put_live_outputs("w1", [_live(run_id, head + tail, start=5)]) == [True]

    seen = await store.live_output("alice", run_id)
    assert seen is not None and seen.output is not None
    assert seen.output.text == tail
    assert seen.output.start == 5 + 1000
    assert seen.output.end == 5 + 1000 + LIVE_OUTPUT_BYTES


async def test_the_window_cuts_on_a_character_boundary(store: Store) -> None:
    _, run_id = await _running(store)
    text = "🙂" * (LIVE_OUTPUT_BYTES // 4 + 1)  # one 4-byte char too many
    assert await store.put_live_outputs("w1", [_live(run_id, "x" + text)]) == [True]

    seen = await store.live_output("alice", run_id)
    assert seen is not None and seen.output is not None
    assert seen.output.text == "🙂" * (LIVE_OUTPUT_BYTES // 4)
    assert seen.output.start == 1 + 4


async def test_untrusted_text_is_stored_clean(store: Store) -> None:
    _, run_id = await _running(store)
    dirty = "a\x00b\ud800c\x01"  # NUL, a lone surrogate (undecodable bytes), a control
    assert await store.put_live_outputs("w1", [_live(run_id, dirty)]) == [True]

    seen = await store.live_output("alice", run_id)
    assert seen is not None and seen.output is not None
    assert seen.output.text == f"a{NUL_MARK}b\ufffdc\x01"


async def test_the_window_goes_when_the_run_ends(store: Store) -> None:
    job = make_job(payload="cmd:x", max_retries=1)
    claimed = await submit_and_lease(store, job, "w1", started=True)
    assert await store.put_live_outputs("w1", [_live(claimed.run_id, "partial")]) == [True]

    failed = outcome(claimed, RunStatus.RETRY_SCHEDULED, retry_at=at(60), exit_code=1)
    assert await store.complete_runs([failed]) == [True]

    seen = await store.live_output("alice", claimed.run_id)
    assert seen is not None
    assert (seen.status, seen.output) == (RunStatus.RETRY_SCHEDULED, None)


async def test_the_window_goes_when_the_run_is_lost_or_handed_back(store: Store) -> None:
    _, reaped = await _running(store)
    _, handed = await _running(store)
    assert await store.put_live_outputs(
        "w1", [_live(reaped, "r"), _live(handed, "h")]
    ) == [True, True]  # fmt: skip

    assert await release(store, "w1", [handed], T0) == 1
    assert await reap(store, at(3600)) == 1  # the lease expired

    for run_id in (reaped, handed):
        seen = await store.live_output("alice", run_id)
        assert seen is not None
        assert seen.status is RunStatus.INTERRUPTED and seen.output is None


async def test_another_users_run_reads_as_missing(store: Store) -> None:
    _, run_id = await _running(store, user="alice")
    assert await store.put_live_outputs("w1", [_live(run_id, "secret")]) == [True]

    assert await store.live_output("bob", run_id) is None
    assert await store.live_output("alice", str(uuid.uuid4())) is None
    assert await store.live_output("alice", "not-a-run") is None
    assert await store.live_output("alice", run_id) is not None


async def test_purging_the_job_deletes_its_window(store: Store) -> None:
    job_id, run_id = await _running(store)
    assert await store.put_live_outputs("w1", [_live(run_id, "x")]) == [True]

    assert await store.purge_job("alice", job_id) is not None
    assert await store.live_output("alice", run_id) is None
    assert await store.put_live_outputs("w1", [_live(run_id, "y")]) == [False]


async def test_a_reader_that_has_the_whole_window_reads_no_text_again(store: Store) -> None:
    _, run_id = await _running(store)
    assert await store.put_live_outputs("w1", [_live(run_id, "0123456789", start=5)]) == [True]

    for after, has_text in ((-1, True), (0, True), (14, True), (15, False), (99, False)):
        seen = await store.live_output("alice", run_id, after=after)
        assert seen is not None and seen.status is RunStatus.RUNNING
        assert (seen.output is not None) is has_text, after
    seen = await store.live_output("alice", run_id, after=14)
    assert seen is not None and seen.output is not None
    assert (seen.output.start, seen.output.text) == (5, "0123456789")  # the whole window
