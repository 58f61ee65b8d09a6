"""``PostgresNotifier`` on real PostgreSQL: delivery between processes' notifiers, burst
de-duplication, and healing after the LISTEN connection or the whole server goes away.

Every wait is a deadline-bounded poll. The restart test runs a PRIVATE server
(initdb + pg_ctl on a free port, stopped in immediate mode) and is skipped when
the PostgreSQL binaries are not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chronoq.adapters.postgres.notify import PostgresNotifier
from chronoq.errors import UnavailableError
from chronoq.ports.notify import CANCEL, FIRES, RUNS

from .conftest import CONNECT_TIMEOUT

DEADLINE = 10.0


async def until(check: Callable[[], bool], within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.01)


async def until_heard(
    sender: PostgresNotifier, channel: str, message: str, heard: list[str]
) -> None:
    """Publish ``message`` again and again until it is heard (a subscription or a reconnect
    may still be settling: hints sent before a LISTEN are lost by design)."""
    deadline = time.monotonic() + DEADLINE
    while message not in heard:
        if time.monotonic() > deadline:
            pytest.fail(f"{message!r} on {channel!r} not heard within {DEADLINE} s: {heard}")
        sender.publish(channel, message)
        await asyncio.sleep(0.05)


@pytest.fixture
async def notifiers(pg_database: str) -> AsyncIterator[Callable[..., PostgresNotifier]]:
    """A factory of notifiers on the test's database, closed at the end."""
    made: list[PostgresNotifier] = []

    def factory(**options: Any) -> PostgresNotifier:
        notifier = PostgresNotifier(pg_database, reconnect_max=0.2, **options)
        made.append(notifier)
        return notifier

    yield factory
    for notifier in made:
        await notifier.close()


async def test_a_hint_reaches_subscribers_on_every_notifier(
    notifiers: Callable[..., PostgresNotifier],
) -> None:
    sender, receiver = notifiers(), notifiers()
    fires: list[str] = []
    runs: list[str] = []
    mine: list[str] = []
    receiver.subscribe(FIRES, fires.append)
    receiver.subscribe(RUNS, runs.append)
    sender.subscribe(FIRES, mine.append)  # the publishing process hears it too
    await asyncio.gather(sender.start(), receiver.start())

    sender.publish(FIRES, "job-1")
    await until(lambda: bool(fires) and bool(mine))
    assert fires == ["job-1"] and mine == ["job-1"]
    assert runs == []

    sender.publish(RUNS)
    await until(lambda: runs == [""])
    assert fires == ["job-1"]


async def test_the_publishing_process_hears_its_hint_at_once_and_once(
    notifiers: Callable[..., PostgresNotifier],
) -> None:
    """A role in the publishing process must not wait for the round trip through the
    server (every role of ``chronoq up --store`` shares one notifier), and the server's
    echo of the hint must not wake it a second time."""
    sender, receiver = notifiers(), notifiers()
    mine: list[str] = []
    theirs: list[str] = []
    back: list[str] = []
    sender.subscribe(FIRES, mine.append)
    sender.subscribe(RUNS, back.append)
    receiver.subscribe(FIRES, theirs.append)
    await asyncio.gather(sender.start(), receiver.start())
    await until_heard(sender, FIRES, "settled", theirs)  # both LISTENs are in place
    mine.clear()

    sender.publish(FIRES, "job-1")
    assert mine == ["job-1"]  # inside publish: no round trip
    await until(lambda: "job-1" in theirs)
    # Notifications reach a connection in commit order: once the receiver's reply is
    # heard, an echo of job-1 (sent before it) would have been delivered already.
    receiver.publish(RUNS, "after")
    await until(lambda: back == ["after"])
    assert mine == ["job-1"]


async def test_a_lone_process_sends_no_notify_and_starts_when_another_listens(
    notifiers: Callable[..., PostgresNotifier],
) -> None:
    """Nobody else listening (``chronoq up --store`` alone): hints reach this process's
    subscribers and cost the server nothing; a second process's hello turns NOTIFYs on."""
    alone = notifiers(discovery=0.0)  # no window for answers: nobody has answered
    mine: list[str] = []
    alone.subscribe(FIRES, mine.append)
    await alone.start()
    sent = alone.sent
    for n in range(3):
        alone.publish(FIRES, f"alone-{n}")
    await until(lambda: alone.unheard >= 3)
    assert alone.sent == sent
    assert mine == ["alone-0", "alone-1", "alone-2"]

    other = notifiers()
    theirs: list[str] = []
    other.subscribe(FIRES, theirs.append)
    await other.start()
    await until_heard(alone, FIRES, "both", theirs)
    assert alone.sent > sent


async def test_a_burst_costs_one_notify_and_distinct_messages_all_arrive(
    notifiers: Callable[..., PostgresNotifier],
) -> None:
    sender, receiver = notifiers(), notifiers()
    fires: list[str] = []
    cancels: list[str] = []
    receiver.subscribe(FIRES, fires.append)
    receiver.subscribe(CANCEL, cancels.append)
    await asyncio.gather(sender.start(), receiver.start())
    await until_heard(sender, FIRES, "ready", fires)
    await until(lambda: sender.sent > 0 and not sender._pending)
    sent_before = sender.sent
    fires.clear()

    async def submit() -> None:  # a thousand submissions finishing in one loop turn
        await asyncio.sleep(0)
        sender.publish(FIRES)

    await asyncio.gather(*(submit() for _ in range(1000)))
    for run_id in ("r1", "r2", "r1", "r3"):
        sender.publish(CANCEL, run_id)
    await until(lambda: bool(fires) and len(cancels) == 3)
    await asyncio.sleep(0.2)  # nothing else is on its way
    assert fires == [""]
    assert cancels == ["r1", "r2", "r3"]
    assert sender.sent - sent_before <= 4  # at most a few sends for 1000 + 4 hints


async def test_publish_never_blocks_and_is_sent_after_start(
    notifiers: Callable[..., PostgresNotifier],
) -> None:
    sender, receiver = notifiers(), notifiers()
    heard: list[str] = []
    receiver.subscribe(FIRES, heard.append)
    await receiver.start()
    sender.publish(FIRES, "early")  # not started yet: queued
    await sender.start()
    await until(lambda: heard == ["early"])


async def test_subscribing_after_start_listens_in_the_background(
    notifiers: Callable[..., PostgresNotifier],
) -> None:
    sender, receiver = notifiers(), notifiers()
    await asyncio.gather(sender.start(), receiver.start())
    heard: list[str] = []
    receiver.subscribe(RUNS, heard.append)
    await until_heard(sender, RUNS, "late", heard)


async def test_a_failing_callback_does_not_starve_the_others(
    notifiers: Callable[..., PostgresNotifier], caplog: pytest.LogCaptureFixture
) -> None:
    notifier = notifiers()
    heard: list[str] = []

    def broken(message: str) -> None:
        raise RuntimeError("boom")

    notifier.subscribe(FIRES, broken)
    notifier.subscribe(FIRES, heard.append)
    await notifier.start()
    notifier.publish(FIRES, "x")
    await until(lambda: heard == ["x"])
    assert "callback failed" in caplog.text


async def test_close_is_idempotent_and_start_may_follow(
    notifiers: Callable[..., PostgresNotifier],
) -> None:
    sender, receiver = notifiers(), notifiers()
    heard: list[str] = []
    receiver.subscribe(FIRES, heard.append)
    await asyncio.gather(sender.start(), receiver.start())
    await until_heard(sender, FIRES, "one", heard)

    await receiver.close()
    await receiver.close()
    await receiver.start()
    await until_heard(sender, FIRES, "two", heard)

    await sender.close()
    sender.publish(FIRES, "queued while closed")
    await sender.start()
    await until(lambda: "queued while closed" in heard)


async def test_a_terminated_listen_connection_heals_and_hints_everyone(
    notifiers: Callable[..., PostgresNotifier], pg_database: str
) -> None:
    sender, receiver = notifiers(), notifiers(application_name="chronoq-test-receiver")
    fires: list[str] = []
    runs: list[str] = []
    receiver.subscribe(FIRES, fires.append)
    receiver.subscribe(RUNS, runs.append)
    await asyncio.gather(sender.start(), receiver.start())
    await until_heard(sender, FIRES, "before", fires)
    assert runs == []

    admin = await asyncpg.connect(pg_database, timeout=CONNECT_TIMEOUT)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'chronoq-test-receiver' AND datname = current_database()"
        )
    finally:
        await admin.close()
    assert killed == 1

    # One synthetic hint on every subscribed channel once it is back ...
    await until(lambda: receiver.reconnects == 1 and "" in fires and "" in runs)
    assert runs == [""]
    # ... and real hints flow again.
    await until_heard(sender, FIRES, "after", fires)


async def test_bad_channels_and_oversized_messages_are_refused(
    notifiers: Callable[..., PostgresNotifier],
) -> None:
    notifier = notifiers()
    with pytest.raises(ValueError, match="channel"):
        notifier.publish("Fires; DROP TABLE jobs")
    with pytest.raises(ValueError, match="too long"):
        notifier.subscribe("x" * 60, print)
    with pytest.raises(ValueError, match="bytes"):
        notifier.publish(FIRES, "x" * 8000)
    notifier.publish(FIRES, "é" * 3999)  # 7998 bytes: fine


async def test_an_unreachable_server_is_unavailable_at_start() -> None:
    notifier = PostgresNotifier("postgresql://postgres@127.0.0.1:1/x", connect_timeout=2)
    with pytest.raises(UnavailableError):
        await notifier.start()
    await notifier.close()


# -- a private server that the test stops and starts ----------------------------------------


class PrivateServer:
    """A throwaway PostgreSQL cluster on a free loopback port (root runs it as ``postgres``)."""

    def __init__(self, bindir: Path, root: Path, port: int, runas: list[str]) -> None:
        self.bindir = bindir
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = port
        self.runas = runas
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    async def _run(self, tool: str, *args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *self.runas,
            str(self.bindir / tool),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {output.decode(errors='replace')}")

    async def init(self) -> None:
        await self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")

    async def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c full_page_writes=off"
        )
        await self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )

    async def stop(self) -> None:
        await self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def private_server() -> AsyncIterator[PrivateServer]:
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        pytest.skip("PostgreSQL server binaries (pg_ctl, initdb) are not installed")
    bindir = Path(pg_ctl).resolve().parent  # noqa: ASYNC240 - fixture set-up, once
    runas: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="chronoq-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            account = None
        if runuser is None or account is None:
            shutil.rmtree(root)
            pytest.skip("running as root without a 'postgres' account to run a private server")
        os.chown(root, account.pw_uid, account.pw_gid)
        runas = [runuser, "-u", "postgres", "--"]
    server = PrivateServer(bindir, root, _free_port(), runas)
    started = False
    try:
        await server.init()
        await server.start()
        started = True
        yield server
    finally:
        if started:
            with contextlib.suppress(RuntimeError):  # already stopped
                await server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
async def test_the_notifier_survives_a_server_restart(private_server: PrivateServer) -> None:
    sender = PostgresNotifier(private_server.dsn, reconnect_max=0.2, connect_timeout=2)
    receiver = PostgresNotifier(private_server.dsn, reconnect_max=0.2, connect_timeout=2)
    heard: list[str] = []
    receiver.subscribe(FIRES, heard.append)
    await asyncio.gather(sender.start(), receiver.start())
    try:
        await until_heard(sender, FIRES, "before", heard)
        for _ in range(2):  # twice: the healed connection heals again
            expected = receiver.reconnects + 1
            await private_server.stop()
            sender.publish(FIRES, "while down")  # never blocks, never raises
            await asyncio.sleep(0.3)  # both notifiers now retry with backoff
            heard.clear()
            await private_server.start()
            await until(lambda: receiver.reconnects == expected and "" in heard)  # noqa: B023
            await until_heard(sender, FIRES, "after", heard)
    finally:
        await asyncio.gather(sender.close(), receiver.close())
