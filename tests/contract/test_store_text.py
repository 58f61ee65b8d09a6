"""Store contract: untrusted text. Job output and error text are whatever a process printed;
``RunOutcome`` cleans them (``domain.text``) and every store then keeps EXACTLY the cleaned
string — the same literal strings below on every backend. Text an engine cannot hold never
wedges a store: it is refused as ``ValidationError`` for that call alone, or stored."""

from __future__ import annotations

import dataclasses

import pytest

from chronoq.domain.jobs import LIST_OUTPUT_CHARS, RunOutcome
from chronoq.domain.states import RunStatus
from chronoq.errors import ValidationError
from chronoq.ports.store import Store

from .helpers import (
    T0,
    at,
    claim_due,
    claim_runs,
    make_job,
    outcome,
    output_of,
    run_by_id,
    submit_and_lease,
)

LONG = "é∑🙂x" * 250_000  # 1,000,000 characters, 2.5 MB of UTF-8
UNTRUSTED = [
    pytest.param("a\x00b\x00", "a\u2400b\u2400", id="nul"),
    pytest.param("a\udcffb\ud800", "a\ufffdb\ufffd", id="lone-surrogates"),
    pytest.param("\x01\x1b[31mred\x1b[0m\x7f\x08", "\x01\x1b[31mred\x1b[0m\x7f\x08", id="controls"),
    pytest.param("tab\tcr\rlf\n\u2028\U0001f600", "tab\tcr\rlf\n\u2028\U0001f600", id="unicode"),
    pytest.param("", "", id="empty"),
    pytest.param(LONG + "\x00\udcff", LONG + "\u2400\ufffd", id="long"),
]


@pytest.mark.parametrize(("raw", "stored"), UNTRUSTED)
async def test_untrusted_output_and_error_text_read_back_as_the_cleaned_text(
    store: Store, raw: str, stored: str
) -> None:
    job = make_job(max_retries=1)
    claimed = await submit_and_lease(store, job, "w1", started=True)
    ended = outcome(claimed, RunStatus.FAILED, output=raw, error_message=raw, exit_code=1)
    assert (ended.output, ended.error_message) == (stored, stored)  # cleaned before the store

    assert await store.complete_runs([ended]) == [True]

    run = await run_by_id(store, job, claimed.run_id)
    assert await output_of(store, job, claimed.run_id) == stored
    assert run.output == stored[:LIST_OUTPUT_CHARS]  # a list carries the start only
    assert run.output_truncated is (len(stored) > LIST_OUTPUT_CHARS)
    assert run.error_message == stored
    assert run.status is RunStatus.FAILED


async def test_outcomes_with_untrusted_text_are_recorded_together_in_one_call(
    store: Store,
) -> None:
    jobs = [make_job(next_fire_at=at(-i)) for i in range(len(UNTRUSTED))]
    await store.insert_jobs(jobs)
    await claim_due(store, T0)
    claimed = await claim_runs(store, "w1", T0)
    texts = [(p.values[0], p.values[1]) for p in UNTRUSTED]
    outs = [
        outcome(c, RunStatus.COMPLETED, output=raw)
        for c, (raw, _) in zip(claimed, texts, strict=True)
    ]

    assert await store.complete_runs(outs) == [True] * len(outs)

    by_job = {j.job_id: j for j in jobs}
    for c, (_, stored) in zip(claimed, texts, strict=True):
        assert await output_of(store, by_job[c.job_id], c.run_id) == stored


def _uncleaned(clean: RunOutcome, text: str) -> RunOutcome:
    """``clean`` carrying ``text`` as it is: what a buggy caller could hand a store."""
    raw = dataclasses.replace(clean)
    object.__setattr__(raw, "output", text)  # skips RunOutcome's cleaning on purpose
    return raw


@pytest.mark.parametrize("text", ["a\udcffb", "a\x00b"])
async def test_text_an_engine_cannot_hold_is_refused_alone_and_wedges_nothing(
    store: Store, text: str
) -> None:
    jobs = [make_job(next_fire_at=at(-1)), make_job()]
    await store.insert_jobs(jobs)
    await claim_due(store, T0)
    bad, good = await claim_runs(store, "w1", T0)

    try:
        recorded = await store.complete_runs([_uncleaned(outcome(bad, RunStatus.COMPLETED), text)])
    except ValidationError:  # refused: nothing of that call was recorded
        assert (await run_by_id(store, jobs[0], bad.run_id)).status is RunStatus.RUNNING
    else:
        assert recorded == [True]

    assert await store.complete_runs([outcome(good, RunStatus.COMPLETED, output="ok")]) == [True]
    assert (await run_by_id(store, jobs[1], good.run_id)).output == "ok"
    assert (await store.backlog(T0)).due == 0  # and reads still work
