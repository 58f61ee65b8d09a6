"""The SubmissionLog contract, on every adapter: in-memory (on a ``FakeClock``), real
PostgreSQL (the server's clock) and a real Redis started by the test (its clock: a
hold is the idle time of a pending stream entry).

Time passes differently per adapter, so every test that needs a hold to run out
polls with a deadline (``LogHarness.eventually``): each poll advances the fake
clock by a step (memory) or waits a step of real time (PostgreSQL, whose own
clock decides). A hold that must NOT pass within a test is ``LONG``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pytest

from chronoq.domain.jobs import Job
from chronoq.errors import ValidationError
from chronoq.ports.submissions import LoggedJob, SubmissionLog
from tests.support.redis_server import redis_factory  # noqa: F401 - a fixture

from .helpers import make_job

T = TypeVar("T")

SHORT = 0.2
"""A hold meant to run out during the test."""
LONG = 60.0
"""A hold that must not run out during the test."""
STEP = 0.05
DEADLINE = 10.0


@dataclass(slots=True)
class LogHarness:
    kind: str
    log: SubmissionLog
    second: SubmissionLog
    """Another reader of the same log (PostgreSQL: another pool, as another process)."""
    tick: Callable[[], Awaitable[None]]
    """Let ``STEP`` seconds pass on the log's clock."""
    opened: list[SubmissionLog] = field(default_factory=list)

    async def eventually(self, probe: Callable[[], Awaitable[T]]) -> T:
        """Poll ``probe`` (letting time pass between polls) until it returns something
        truthy; fail after ``DEADLINE`` seconds of real time."""
        deadline = time.monotonic() + DEADLINE
        while True:
            value = await probe()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {DEADLINE} s")
            await self.tick()


def _memory_log(clock: Any) -> SubmissionLog:
    try:
        from chronoq.adapters.memory import MemorySubmissionLog
    except ImportError as exc:
        pytest.skip(f"chronoq.adapters.memory.MemorySubmissionLog is not importable yet: {exc}")
    log: SubmissionLog = MemorySubmissionLog(clock)
    return log


@pytest.fixture(params=["memory", "postgres", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[LogHarness]:
    if request.param == "memory":
        from chronoq.testing import FakeClock

        clock = FakeClock()
        log = _memory_log(clock)
        await log.start()
        h = LogHarness("memory", log, log, lambda: clock.advance(STEP), [log])
    elif request.param == "postgres":
        from chronoq.adapters.postgres import PostgresSubmissionLog

        dsn = request.getfixturevalue("pg_database")
        one, two = PostgresSubmissionLog(dsn), PostgresSubmissionLog(dsn)
        await asyncio.gather(one.start(), two.start())
        h = LogHarness("postgres", one, two, lambda: asyncio.sleep(STEP), [one, two])
    else:
        from chronoq.adapters.redis.submissions import RedisSubmissionLog

        server = request.getfixturevalue("redis_factory")(durable=False)
        first, second = (RedisSubmissionLog.from_url(server.url) for _ in range(2))
        await asyncio.gather(first.start(), second.start())
        h = LogHarness("redis", first, second, lambda: asyncio.sleep(STEP), [first, second])
    try:
        yield h
    finally:
        for log in h.opened:
            await log.close()


def jobs_of(entries: list[LoggedJob]) -> list[Job]:
    return [e.job for e in entries]


async def test_append_then_read_oldest_first(harness: LogHarness) -> None:
    first, second, third = make_job(), make_job(user_id="bob"), make_job()
    await harness.log.append([first, second])
    await harness.log.append([third])
    await harness.log.append([])  # nothing to log is fine

    entries = await harness.log.read("writer-1", 10, hold=LONG)
    assert jobs_of(entries) == [first, second, third]  # the same jobs, whole
    assert len({e.entry_id for e in entries}) == 3


async def test_read_takes_at_most_limit_and_the_rest_stays_for_the_next_read(
    harness: LogHarness,
) -> None:
    jobs = [make_job() for _ in range(5)]
    await harness.log.append(jobs)
    assert await harness.log.read("writer-1", 0, hold=LONG) == []
    assert jobs_of(await harness.log.read("writer-1", 2, hold=LONG)) == jobs[:2]
    assert jobs_of(await harness.second.read("writer-2", 10, hold=LONG)) == jobs[2:]
    assert await harness.log.read("writer-1", 10, hold=LONG) == []


async def test_a_held_entry_is_read_by_nobody_until_its_hold_passes(harness: LogHarness) -> None:
    job = make_job()
    await harness.log.append([job])
    (entry,) = await harness.log.read("writer-1", 10, hold=LONG)
    assert entry.job == job
    assert await harness.second.read("writer-2", 10, hold=LONG) == []
    assert await harness.log.read("writer-1", 10, hold=LONG) == []  # nor by its own reader


async def test_an_entry_not_acknowledged_is_delivered_again_after_its_hold(
    harness: LogHarness,
) -> None:
    """The writer that read it died before ``ack``: another writer gets the same entry."""
    job = make_job()
    await harness.log.append([job])
    (held,) = await harness.log.read("writer-1", 10, hold=SHORT)

    again = await harness.eventually(lambda: harness.second.read("writer-2", 10, hold=LONG))
    assert [(e.entry_id, e.job) for e in again] == [(held.entry_id, job)]
    assert await harness.log.read("writer-1", 10, hold=LONG) == []  # held anew, for writer-2


async def test_a_redelivered_entry_still_comes_before_newer_ones(harness: LogHarness) -> None:
    old = make_job()
    await harness.log.append([old])
    await harness.log.read("writer-1", 10, hold=SHORT)  # writer-1 dies holding it
    new = make_job()
    await harness.log.append([new])
    assert jobs_of(await peek(harness)) == [new]

    entries = await harness.eventually(lambda: _when_count(peek(harness), 2))
    assert jobs_of(entries) == [old, new]


async def peek(harness: LogHarness) -> list[LoggedJob]:
    """What a read gets now, holding nothing (a zero hold)."""
    return await harness.second.read("peeker", 10, hold=0)


async def _when_count(read: Awaitable[list[LoggedJob]], count: int) -> list[LoggedJob]:
    entries = await read
    return entries if len(entries) == count else []


async def test_ack_removes_for_good(harness: LogHarness) -> None:
    kept, acked = make_job(), make_job()
    await harness.log.append([acked, kept])
    entries = await harness.log.read("writer-1", 10, hold=SHORT)
    await harness.log.ack([e.entry_id for e in entries if e.job == acked])

    # Both holds started together; once the kept entry is back, the acked one's hold is
    # over too, and it is not delivered.
    again = await harness.eventually(lambda: harness.second.read("writer-2", 10, hold=LONG))
    assert jobs_of(again) == [kept]


async def test_ack_of_unknown_or_repeated_ids_is_fine(harness: LogHarness) -> None:
    job = make_job()
    await harness.log.append([job])
    (entry,) = await harness.log.read("writer-1", 10, hold=SHORT)
    await harness.log.ack([])
    await harness.log.ack(["no-such-entry", "-1", "99999999999", ""])
    await harness.log.ack([entry.entry_id])
    await harness.second.ack([entry.entry_id])  # twice, from another writer
    assert await harness.log.get_job(job.user_id, job.job_id) is None


async def test_get_job_finds_a_job_until_its_entry_is_acknowledged(harness: LogHarness) -> None:
    job = make_job()
    assert await harness.log.get_job(job.user_id, job.job_id) is None
    await harness.log.append([job])
    assert await harness.second.get_job(job.user_id, job.job_id) == job
    assert await harness.log.get_job("mallory", job.job_id) is None  # another user's: missing
    assert await harness.log.get_job(job.user_id, "not-an-id") is None

    (entry,) = await harness.log.read("writer-1", 10, hold=LONG)
    assert await harness.log.get_job(job.user_id, job.job_id) == job  # held: still there
    await harness.log.ack([entry.entry_id])
    assert await harness.second.get_job(job.user_id, job.job_id) is None


async def test_two_readers_at_once_lose_nothing_and_never_share_a_held_entry(
    harness: LogHarness,
) -> None:
    jobs = [make_job() for _ in range(150)]
    for chunk in range(0, 150, 50):
        await harness.log.append(jobs[chunk : chunk + 50])

    async def reader(log: SubmissionLog, name: str) -> list[LoggedJob]:
        taken: list[LoggedJob] = []
        empty = 0
        while empty < 2:
            got = await log.read(name, 7, hold=LONG)
            taken.extend(got)
            empty = 0 if got else empty + 1
            await asyncio.sleep(0)
        return taken

    one, two = await asyncio.gather(
        reader(harness.log, "writer-1"), reader(harness.second, "writer-2")
    )
    ids = Counter(e.entry_id for e in one + two)
    assert max(ids.values()) == 1  # none read twice while held
    assert sorted(j.job_id for j in jobs_of(one + two)) == sorted(j.job_id for j in jobs)
    assert one and two, "both readers should have had a share"
    for taken in (one, two):  # each reader saw its entries oldest first
        order = [jobs.index(j) for j in jobs_of(taken)]
        assert order == sorted(order)

    await harness.log.ack([e.entry_id for e in one])
    await harness.second.ack([e.entry_id for e in two])
    for job in jobs[:5]:
        assert await harness.log.get_job(job.user_id, job.job_id) is None


async def test_bad_read_arguments_are_refused(harness: LogHarness) -> None:
    await harness.log.append([make_job()])
    with pytest.raises(ValidationError):
        await harness.log.read("", 10, hold=LONG)
    with pytest.raises(ValidationError):
        await harness.log.read("writer-1", 10, hold=-1)
    with pytest.raises(ValidationError):
        await harness.log.read("writer-1", 10, hold=float("nan"))
    assert len(await harness.log.read("writer-1", 10, hold=LONG)) == 1  # nothing was held


# -- PostgreSQL only -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [{"user_id": "al\x00ice"}, {"payload": "lone \udc80 surrogate"}],
    ids=["nul-user", "lone-surrogate"],
)
async def test_postgres_refuses_text_it_cannot_hold_as_validation_error(
    pg_database: str, bad: dict[str, Any]
) -> None:
    """Callers refuse such text at the edge; if some gets through, the log says so as a
    ValidationError (never a driver error, never a hang) and appends nothing of the batch.
    (The memory log holds any ``str``.)"""
    from chronoq.adapters.postgres import PostgresSubmissionLog

    log = PostgresSubmissionLog(pg_database, max_size=1)  # one connection: it must recover
    await log.start()
    try:
        good = make_job()
        with pytest.raises(ValidationError):
            await asyncio.wait_for(log.append([good, replace(make_job(), **bad)]), DEADLINE)
        assert await log.read("writer-1", 10, hold=LONG) == []
        await log.append([good])  # the log still works
        assert jobs_of(await log.read("writer-1", 10, hold=LONG)) == [good]
    finally:
        await log.close()


# -- Redis only --------------------------------------------------------------------------------


@pytest.fixture
async def redis_logs(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A durable server (AOF, appendfsync always) and a function opening logs on it."""
    from chronoq.adapters.redis.submissions import RedisSubmissionLog

    server = request.getfixturevalue("redis_factory")()
    opened: list[RedisSubmissionLog] = []

    async def open_log(url: str = server.url) -> RedisSubmissionLog:
        log = RedisSubmissionLog.from_url(url)
        await log.start()
        opened.append(log)
        return log

    yield server, open_log
    for log in opened:
        await log.close()


async def test_redis_keeps_every_appended_entry_across_a_crash(redis_logs: Any) -> None:
    """appendfsync always: what ``append`` returned for is in the AOF when Redis is
    SIGKILLed, held entries stay held (the pending list is in the AOF too), and the
    same client works again once Redis is back."""
    server, open_log = redis_logs
    log = await open_log()
    jobs = [make_job() for _ in range(300)]
    for chunk in range(0, 300, 100):
        await log.append(jobs[chunk : chunk + 100])
    held = await log.read("writer-1", 10, hold=LONG)
    await log.ack([e.entry_id for e in held[:5]])

    server.kill()
    from chronoq.errors import UnavailableError

    with pytest.raises(UnavailableError):
        await asyncio.wait_for(log.append([make_job()]), DEADLINE)  # the api answers 503
    server.start()

    async def readable() -> list[LoggedJob]:
        try:
            got: list[LoggedJob] = await log.read("writer-2", 1000, hold=LONG)
            return got
        except UnavailableError:  # still loading the AOF
            return []

    deadline = time.monotonic() + DEADLINE
    rest = await readable()
    while not rest and time.monotonic() < deadline:
        await asyncio.sleep(STEP)
        rest = await readable()
    assert jobs_of(rest) == jobs[10:]  # the 5 held ones are still held for writer-1
    assert await log.get_job(jobs[7].user_id, jobs[7].job_id) == jobs[7]
    assert await log.get_job(jobs[2].user_id, jobs[2].job_id) is None  # acknowledged


async def test_redis_append_of_a_big_batch_is_one_unit(redis_logs: Any) -> None:
    _server, open_log = redis_logs
    log = await open_log()
    jobs = [make_job() for _ in range(2500)]  # over one script call's chunk
    await log.append(jobs)
    assert jobs_of(await log.read("writer-1", 5000, hold=LONG)) == jobs
    with pytest.raises(ValidationError):
        await log.append(
            [make_job() for _ in range(1500)] + [replace(make_job(), payload="\udc80")]
        )
    assert await log.read("writer-2", 5000, hold=0) == []  # nothing of the refused batch


async def test_redis_key_prefixes_are_separate_logs(redis_logs: Any) -> None:
    server, open_log = redis_logs
    blue, green = (
        await open_log(server.url + "?key=blue"),
        await open_log(server.url + "?key=green"),
    )
    job = make_job()
    await blue.append([job])
    assert await green.read("writer-1", 10, hold=LONG) == []
    assert await green.get_job(job.user_id, job.job_id) is None
    assert jobs_of(await blue.read("writer-1", 10, hold=LONG)) == [job]


async def test_redis_an_entry_that_is_not_a_job_moves_to_the_dead_stream(redis_logs: Any) -> None:
    import redis.asyncio as aioredis

    server, open_log = redis_logs
    log = await open_log()
    good = make_job()
    raw = aioredis.Redis.from_url(server.url)
    try:
        await raw.xadd(log.stream, {"k": "x", "j": b'{"not": "a job"}'})
        await log.append([good])
        assert jobs_of(await log.read("writer-1", 10, hold=LONG)) == [good]
        assert await raw.xlen(log.dead) == 1
        assert await log.read("writer-2", 10, hold=0) == []  # it is not delivered again
    finally:
        await raw.aclose()


async def test_redis_unreachable_at_start_is_one_line_naming_the_setting() -> None:
    from chronoq.adapters.redis.submissions import RedisSubmissionLog
    from chronoq.errors import ConfigError, UnavailableError
    from chronoq.runtime.servers.base import free_port

    log = RedisSubmissionLog.from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(UnavailableError, match="--ingest") as caught:
        await asyncio.wait_for(log.start(), DEADLINE)
    assert "\n" not in str(caught.value)
    with pytest.raises(UnavailableError):
        await log.append([make_job()])  # never started
    with pytest.raises(ConfigError, match="--ingest"):
        RedisSubmissionLog.from_url("redis://127.0.0.1:6379/x")


@pytest.mark.parametrize("durable", [True, False], ids=["aof-always", "no-aof"])
async def test_redis_warns_at_start_when_appends_would_not_survive_a_crash(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, durable: bool
) -> None:
    from chronoq.adapters.redis.submissions import RedisSubmissionLog

    server = request.getfixturevalue("redis_factory")(durable=durable)
    log = RedisSubmissionLog.from_url(server.url)
    with caplog.at_level("WARNING", logger="chronoq.redis"):
        await log.start()
    await log.close()
    warned = [r.getMessage() for r in caplog.records if "appendfsync" in r.getMessage()]
    assert bool(warned) is not durable, warned
