"""``PostgresNotifier``: the Notifier port over PostgreSQL ``LISTEN`` / ``NOTIFY``.

One dedicated connection per notifier, owned by one background task that does
everything on it, in order: ``LISTEN chronoq_<channel>`` for each subscribed
channel, and sending what ``publish`` queued. Hints from other processes arrive
on that connection and are handed to the callbacks on the event loop.

* This process's own subscribers hear a hint at once, inside ``publish`` (as
  with ``MemoryNotifier``), and its echo from the server is ignored (the
  notification names the sending backend: this connection). With every role in
  one process (``chronoq up --store``) a hint then costs no round trip: the
  trip through PostgreSQL (wake the task, ``pg_notify``, its commit, the
  delivery) was ~0.9 ms of the 4 ms from a submit to its start at light load.
  A NOTIFY no other process would hear is not sent at all (``peers``).

* ``publish`` never blocks and never fails for a down server: it adds
  ``(channel, message)`` to an ordered set and wakes the task. Whatever piled
  up while the previous send was in flight goes out in ONE statement
  (``pg_notify`` over ``unnest``), and a pending pair is never queued twice, so
  a burst of a thousand ``publish(FIRES)`` costs one or a few NOTIFYs, not a
  thousand. The queue is bounded (``max_pending``); past it, hints with a
  message are dropped (a hint may be lost; roles re-read the store anyway).
* Losing the connection (server restart, ``pg_terminate_backend``, a dead
  link caught by the keepalive query) makes the task reconnect with
  exponential backoff and jitter, LISTEN again on every channel and then
  deliver ONE synthetic hint (message ``""``) to every subscribed callback:
  hints sent while it was away are lost, so everyone re-checks the store.
  Queued hints are kept across the outage and sent after reconnecting.
* NOTIFY payloads are limited to 8000 bytes: messages are short ids
  (``ValueError`` above ``MAX_MESSAGE_BYTES``). Channel names are
  ``[a-z0-9_]`` and at most 63 bytes with the prefix (``ValueError``).

Lifecycle: ``start()`` opens the connection (``UnavailableError`` if the
server cannot be reached) and LISTENs on the channels subscribed so far; after
that the notifier heals itself. ``close()`` sends what is queued (briefly,
best effort), closes, and is safe to call twice; ``start()`` may follow again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import re
from collections.abc import Callable
from typing import Any

from chronoq.adapters.postgres.driver import asyncpg
from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.peers import CHANNEL as PEERS
from chronoq.adapters.postgres.peers import HELLO, HERE, Peers
from chronoq.errors import UnavailableError

log = logging.getLogger("chronoq.notify")

PREFIX = "chronoq_"
MAX_MESSAGE_BYTES = 7999
"""PostgreSQL refuses NOTIFY payloads of 8000 bytes or more."""

_SEND = "SELECT pg_notify(c, m) FROM unnest($1::text[], $2::text[]) AS t(c, m)"
_SEND_CHUNK = 1000
_CHANNEL = re.compile(r"[a-z0-9_]+")
_IDENTIFIER_BYTES = 63
_STOP_TIMEOUT = 2.0

Callback = Callable[[str], None]


class PostgresNotifier:
    """Hints between processes through PostgreSQL. ``dsn``: ``postgresql://user@host/db``."""

    def __init__(
        self,
        dsn: str,
        *,
        prefix: str = PREFIX,
        connect_timeout: float = 10.0,
        keepalive: float = 15.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        max_pending: int = 10_000,
        application_name: str = "chronoq-notifier",
        discovery: float = 1.0,
    ) -> None:
        """``discovery``: seconds after connecting during which hints are sent although no
        other notifier has answered yet (``peers``)."""
        self._dsn = dsn
        self._application_name = application_name
        self._prefix = prefix
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._max_pending = max_pending
        self._subscribers: dict[str, list[Callback]] = {}
        self._pending: dict[tuple[str, str], None] = {}
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._peers = Peers(keepalive, discovery)
        self._answer = False
        """A peer said hello: say ``here`` at the next turn of the task."""
        self._next_here = 0.0
        self.sent = 0
        """NOTIFYs sent (after de-duplication), for tests and metrics."""
        self.dropped = 0
        """Hints dropped because the queue was full."""
        self.reconnects = 0
        """Connections re-established after a loss."""
        self.unheard = 0
        """Hints not sent as NOTIFY: no other process listens (delivered here only)."""

    # -- the port ----------------------------------------------------------------------------

    def publish(self, channel: str, message: str = "") -> None:
        self._check_channel(channel)
        if len(message.encode()) > MAX_MESSAGE_BYTES:
            raise ValueError(f"a hint's message is at most {MAX_MESSAGE_BYTES} bytes")
        self._deliver(channel, message)
        key = (channel, message)
        if key in self._pending:
            return
        if len(self._pending) >= self._max_pending and message:
            self.dropped += 1
            return
        self._pending[key] = None
        self._wakeup.set()

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        self._check_channel(channel)
        self._subscribers.setdefault(channel, []).append(callback)
        self._wakeup.set()  # the task LISTENs on a new channel

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and LISTEN; later losses are healed in the background."""
        if self._task is not None:
            return
        self._stopping = False
        self._wakeup = asyncio.Event()  # bound to this loop at first wait
        self._wakeup.set()  # send what was published before start
        conn = await self._connect()
        self._task = asyncio.create_task(self._run(conn), name="postgres-notifier")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wakeup.set()
        done, _ = await asyncio.wait({task}, timeout=_STOP_TIMEOUT)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the connection task -----------------------------------------------------------------

    async def _run(self, conn: Any) -> None:
        delay = self._reconnect_min
        while True:
            if conn is None:
                if self._stopping:
                    return
                try:
                    conn = await self._connect()
                except Exception as exc:  # down, or refusing us: keep trying, never die
                    unexpected = not isinstance(exc, UnavailableError)
                    log.warning(
                        "notifier: reconnecting in %.2fs: %s", delay, exc, exc_info=unexpected
                    )
                    await self._sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, self._reconnect_max)
                    continue
                delay = self._reconnect_min
                self.reconnects += 1
                log.info("notifier: reconnected to PostgreSQL")
                self._deliver_everywhere("")  # hints may have been lost while away
            try:
                await self._serve(conn)
            except UnavailableError as exc:
                log.warning("notifier: lost the connection: %s", exc)
            except Exception:
                log.exception("notifier: unexpected error; reconnecting")
            finally:
                await self._discard(conn)
            conn = None

    async def _serve(self, conn: Any) -> None:
        """Listen and send until the connection is lost (raises) or ``close`` (returns)."""
        while True:
            self._wakeup.clear()
            with translated("notifier"):
                await self._listen_all(conn)
                await self._flush(conn)
                if self._stopping:
                    return
                await self._say_here(conn)
                wait = self._next_here - asyncio.get_running_loop().time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), max(wait, 0.0))
                if conn.is_closed():
                    raise UnavailableError("the LISTEN connection was closed")

    async def _connect(self) -> Any:
        with translated("notifier: connecting to PostgreSQL"):
            conn = await asyncpg.connect(
                self._dsn,
                timeout=self._connect_timeout,
                # A hint has nothing to make durable: its commit need not wait for the WAL
                # flush (the rows it is about were committed, durably, before it was sent).
                server_settings={
                    "application_name": self._application_name,
                    "synchronous_commit": "off",
                },
            )
            try:
                conn.add_termination_listener(self._on_terminated)
                await self._listen_all(conn)
                await conn.add_listener(self._prefix + PEERS, self._on_peer)
                await self._say(conn, HELLO)
                self._peers.connected()
            except BaseException:
                conn.terminate()
                raise
        return conn

    async def _listen_all(self, conn: Any) -> None:
        for channel in list(self._subscribers):
            # a no-op for channels this connection LISTENs on already
            await conn.add_listener(self._prefix + channel, self._on_notification)

    async def _say(self, conn: Any, word: str) -> None:
        await conn.execute(_SEND, [self._prefix + PEERS], [word], timeout=self._keepalive)
        self._next_here = asyncio.get_running_loop().time() + self._keepalive

    async def _say_here(self, conn: Any) -> None:
        """Answer a hello, and say ``here`` once per keep-alive (which also proves the
        connection alive)."""
        if self._answer or asyncio.get_running_loop().time() >= self._next_here:
            self._answer = False
            await self._say(conn, HERE)

    async def _flush(self, conn: Any) -> None:
        if self._pending and not self._peers.any():
            self.unheard += len(self._pending)  # delivered here in publish; nobody else
            self._pending.clear()
            return
        while self._pending:
            # Taken off the queue BEFORE sending: a publish made while this batch is in
            # flight (maybe after a change the in-flight hint predates) is sent again after.
            batch = list(itertools.islice(self._pending, _SEND_CHUNK))
            for key in batch:
                del self._pending[key]
            channels = [self._prefix + channel for channel, _ in batch]
            messages = [message for _, message in batch]
            try:
                await conn.execute(_SEND, channels, messages, timeout=self._keepalive)
            except BaseException:
                restored = dict.fromkeys(batch)  # retried after reconnecting, first
                restored.update(self._pending)
                self._pending = restored
                raise
            self.sent += len(batch)

    async def _discard(self, conn: Any) -> None:
        conn.remove_termination_listener(self._on_terminated)
        try:
            await asyncio.wait_for(conn.close(), _STOP_TIMEOUT)
        except (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError):
            conn.terminate()

    async def _sleep(self, seconds: float) -> None:
        """Back off, but return early when ``close`` wakes the task."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wait_stopping(), seconds)

    async def _wait_stopping(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            await self._wakeup.wait()

    # -- delivery ----------------------------------------------------------------------------

    def _on_notification(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if pid == conn.get_server_pid():
            return  # sent by this notifier, heard here when it was published
        self._deliver(channel[len(self._prefix) :], payload)

    def _on_peer(self, conn: Any, pid: int, _channel: str, payload: str) -> None:
        if pid != conn.get_server_pid() and self._peers.heard(pid, payload):
            self._answer = True
            self._wakeup.set()

    def _deliver(self, channel: str, message: str) -> None:
        for callback in list(self._subscribers.get(channel, ())):
            self._call(callback, message)

    def _on_terminated(self, _conn: Any) -> None:
        self._wakeup.set()

    def _deliver_everywhere(self, message: str) -> None:
        for callbacks in list(self._subscribers.values()):
            for callback in list(callbacks):
                self._call(callback, message)

    @staticmethod
    def _call(callback: Callback, message: str) -> None:
        try:
            callback(message)
        except Exception:
            log.exception("notifier: a subscriber's callback failed")

    def _check_channel(self, channel: str) -> None:
        if not _CHANNEL.fullmatch(channel):
            raise ValueError(f"channel names are [a-z0-9_]+, got {channel!r}")
        if len((self._prefix + channel).encode()) > _IDENTIFIER_BYTES:
            raise ValueError(f"channel name too long: {channel!r}")
