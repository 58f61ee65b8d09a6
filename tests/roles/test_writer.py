"""The api's group-committing Writer and the SubmissionMover (buffered ingestion),
in-process on MemoryStore + MemorySubmissionLog + FakeClock."""

from __future__ import annotations

import asyncio

import pytest

from chronoq.domain.jobs import Job
from chronoq.errors import UnavailableError
from chronoq.ports.jobs import ListJobsParams

try:
    from chronoq.services.writer import MOVE_HOLD
    from chronoq.testing.roles import USER, Stack
except ImportError as exc:  # pragma: no cover - only while the memory adapters are written
    pytest.skip(f"chronoq.testing.roles is not importable yet: {exc}", allow_module_level=True)


async def stored(stack: Stack) -> list[str]:
    page = await stack.store.list_jobs(ListJobsParams(user_id=USER, limit=1000))
    return [job.job_id for job in page.items]


async def test_the_writer_commits_what_arrives_meanwhile_in_one_group(stack: Stack) -> None:
    writer = await stack.writer()
    gate = stack.link(writer, "store").hold("insert_jobs")
    jobs = [stack.job() for _ in range(4)]
    first = asyncio.ensure_future(writer.write([jobs[0]]))
    await stack.clock.advance(0.0)  # the first commit is in flight (held)
    rest = [asyncio.ensure_future(writer.write([job])) for job in jobs[1:]]
    await stack.clock.advance(0.0)
    assert not any(f.done() for f in [first, *rest]), "nothing is acknowledged before it is durable"
    gate.set()
    await asyncio.gather(first, *rest)
    assert stack.link(writer, "store").calls["insert_jobs"] == 2, "4 submissions, 2 commits"
    assert sorted(await stored(stack)) == sorted(j.job_id for j in jobs)


async def test_one_bad_submission_fails_alone(stack: Stack) -> None:
    writer = await stack.writer()
    gate = stack.link(writer, "store").hold("insert_jobs")
    blocker, good, bad = stack.job(), stack.job(), stack.job("nul\x00byte")
    first = asyncio.ensure_future(writer.write([blocker]))
    await stack.clock.advance(0.0)
    group = [asyncio.ensure_future(writer.write([job])) for job in (good, bad)]
    gate.set()
    await first
    await asyncio.gather(*group, return_exceptions=True)
    assert group[0].exception() is None
    assert isinstance(group[1].exception(), UnavailableError)
    assert sorted(await stored(stack)) == sorted([blocker.job_id, good.job_id])


async def test_a_stopping_writer_commits_what_it_holds_and_refuses_more(stack: Stack) -> None:
    writer = await stack.writer()
    gate = stack.link(writer, "store").hold("insert_jobs")
    pending = asyncio.ensure_future(writer.write([stack.job()]))
    await stack.clock.advance(0.0)
    stopping = asyncio.ensure_future(writer.stop())
    await stack.clock.advance(1.0)
    with pytest.raises(UnavailableError):
        await writer.write([stack.job()])
    gate.set()
    await asyncio.gather(pending, stopping)
    assert len(await stored(stack)) == 1


# -- the mover ---------------------------------------------------------------------------------


async def test_the_mover_moves_logged_jobs_and_a_redelivery_makes_no_second_job(
    stack: Stack,
) -> None:
    first = await stack.mover("writer-1")
    never_acks = stack.link(first, "submissions").hold("ack")
    job = stack.job()
    await stack.submissions.append([job])
    stack.notifier.publish("submissions")
    await stack.clock.advance(0.0)
    assert await stored(stack) == [job.job_id], "inserted..."
    assert await stack.submissions.get_job(USER, job.job_id) is not None, "...not acknowledged"
    stack.cut(first)  # it dies between the insert and the ack
    never_acks.set()

    second = await stack.mover("writer-2")
    await stack.clock.advance(MOVE_HOLD + 1.5)  # the hold runs out: delivered again
    assert stack.link(second, "store").calls["insert_jobs"] >= 1, "redelivered to writer-2"
    assert await stored(stack) == [job.job_id], "idempotent on the job id"
    dropped = stack.metrics.registry.get_sample_value("submissions_dropped_total")
    assert not dropped, "skipped as already stored, not refused"
    assert await stack.submissions.get_job(USER, job.job_id) is None, "acknowledged at last"


async def test_a_poison_entry_is_dropped_loudly_and_the_log_moves_on(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    good1, poison, good2 = stack.job(), stack.job("nul\x00byte"), stack.job()
    await stack.submissions.append([good1, poison, good2])
    await stack.mover()
    await stack.clock.advance(0.0)
    assert sorted(await stored(stack)) == sorted([good1.job_id, good2.job_id])
    for job in (good1, poison, good2):
        assert await stack.submissions.get_job(USER, job.job_id) is None, "all acknowledged"
    assert stack.metrics.registry.get_sample_value("submissions_dropped_total") == 1.0
    assert any(poison.job_id in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)

    later = stack.job()
    await stack.submissions.append([later])
    stack.notifier.publish("submissions")
    await stack.clock.advance(0.0)
    assert later.job_id in await stored(stack), "not wedged"


async def test_the_mover_backs_off_while_the_store_is_down_and_catches_up(stack: Stack) -> None:
    mover = await stack.mover()
    stack.outage("store")
    jobs: list[Job] = [stack.job() for _ in range(3)]
    await stack.submissions.append(jobs)
    stack.notifier.publish("submissions")
    await stack.clock.advance(20.0)
    assert await stack.submissions.get_job(USER, jobs[0].job_id) is not None, "still logged"
    tries = stack.link(mover, "store").calls["insert_jobs"]
    assert 5 <= tries <= 25, f"{tries} tries in 20 s: retried, with back-off (cap 2 s)"
    stack.restore("store")
    await stack.clock.advance(2.0)  # within one back-off, not after the entries' hold
    assert sorted(await stored(stack)) == sorted(j.job_id for j in jobs)
    assert all([await stack.submissions.get_job(USER, j.job_id) is None for j in jobs])
