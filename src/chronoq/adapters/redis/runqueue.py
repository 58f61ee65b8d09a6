"""``RedisRunQueue``: the RunQueue port on a Redis stream with one consumer group.

Keys (``P`` is the URL's ``key`` prefix): ``P:{runq}`` is the stream (one entry per
message, field ``run``), read by the group ``workers``; ``P:{runq}:dead`` holds the
run ids of dead letters (one hash tag: a script touches both, also on a Redis Cluster).
Those are the default queue's; ``named(q)`` (any other Chronoq queue ``q``) uses
``P:{runq}:q:<q>`` and ``P:{runq}:q:<q>:dead`` (``:`` is not in a queue name, so no two
queues share a key). The named queues are kept on the base (one object per name) and
share its client (one connection pool), which the base's ``close`` closes: every named
queue is closed with it. The Lua scripts are in ``runqueue_scripts.py``.

* ``receive`` first takes over entries whose holder went quiet (``XAUTOCLAIM`` with
  min-idle = ``hold``, so every receiver of one queue uses the same hold), then reads
  new entries (``XREADGROUP``, blocking up to ``wait`` only when nothing was taken
  over). ``deliveries`` is the entry's delivery count in the pending list. An entry
  already delivered ``max_receives`` times is moved to the dead stream instead (in
  the same script, so two receivers never both see it).
* A receipt is ``id/count/consumer``: ``extend`` sets the idle time (``XCLAIM … IDLE
  … JUSTID``, which keeps the count) to the receivers' hold minus the new hold, only
  while the entry is still that consumer's at that count, so a superseded receipt never
  steals an entry back. A hold longer than the receivers' counts as theirs.
* ``ack`` is ``XACK`` + ``XDEL``; ``depth`` is ``XLEN`` (waiting and in flight).

Redis is not the truth (the store is): a server restarted empty has no stream and no
group; every command that meets ``NOGROUP`` recreates the group (from id 0, so entries
sent before that are read) and tries once more, and the dispatch layer re-derives the
lost messages from the store. A connection failure is ``UnavailableError``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.commands.core import AsyncScript

from chronoq.adapters.redis import runqueue_scripts as scripts
from chronoq.adapters.redis.client import parse_redis_url
from chronoq.domain.queues import DEFAULT_QUEUE
from chronoq.errors import ConfigError, UnavailableError, ValidationError
from chronoq.ports.runqueue import Delivery, check_receive, memoized_named

T = TypeVar("T")

SETTING = "dispatch"
GROUP = "workers"
OP_TIMEOUT = 10.0
"""Seconds any one command may take (beyond a receive's ``wait``) before the server is
called unavailable."""
DEFAULT_MAX_RECEIVES = 5
# Redis full, a replica, failing over: retry later (the store keeps the truth meanwhile).
_UNAVAILABLE = ("OOM", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS")
_UNAVAILABLE_ERRORS = (
    redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
)


def _split_options(url: str) -> tuple[str, int]:
    """The URL without ``max_receives`` (for ``parse_redis_url``), and its value."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    max_receives = DEFAULT_MAX_RECEIVES
    rest = []
    for name, value in pairs:
        if name != "max_receives":
            rest.append((name, value))
        elif value.isascii() and value.isdigit() and len(value) < 6:
            max_receives = int(value)
        else:
            raise ConfigError(f"{SETTING}: max_receives must be a whole number >= 0, got {value!r}")
    return parts._replace(query=urlencode(rest)).geturl(), max_receives


class _Connection:
    """The client (and its scripts) of a base queue and all its named queues."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client: aioredis.Redis | None = None

    def open(self) -> None:
        if self.client is None:
            self.client = aioredis.Redis.from_url(
                self.url,
                socket_connect_timeout=5,
                health_check_interval=10,
                decode_responses=True,
            )
            self.claim: AsyncScript = self.client.register_script(scripts.CLAIM)
            self.extend: AsyncScript = self.client.register_script(scripts.EXTEND)
            self.drain: AsyncScript = self.client.register_script(scripts.DRAIN)

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()


class RedisRunQueue:
    """The run queue on Redis Streams (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "chronoq",
        max_receives: int = 5,
        _base: RedisRunQueue | None = None,
        _queue: str = DEFAULT_QUEUE,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._where = f"{urlsplit(url).hostname}:{urlsplit(url).port or 6379}"
        self._stream = f"{prefix}:{{runq}}" + ("" if _queue == DEFAULT_QUEUE else f":q:{_queue}")
        self._dead = f"{self._stream}:dead"
        self._max_receives = max_receives
        self._base = self if _base is None else _base
        self._connection: _Connection = _Connection(url) if _base is None else _base._connection
        self._named: dict[str, RedisRunQueue] = {}
        """The named queues (on the base only)."""
        self._started = False
        self._receive_hold = 0.0
        """The hold of this process's receives: what ``extend`` counts from."""

    @classmethod
    def from_url(cls, url: str) -> RedisRunQueue:
        """``redis://host:port/db?key=prefix&max_receives=N``; a bad URL is a one-line
        ConfigError naming the setting."""
        rest, max_receives = _split_options(url)
        parsed = parse_redis_url(rest, SETTING)
        return cls(parsed.url, prefix=parsed.prefix, max_receives=max_receives)

    def named(self, queue: str) -> RedisRunQueue:
        base = self._base
        return memoized_named(base, base._named, queue, lambda: RedisRunQueue(
            base._url, prefix=base._prefix, max_receives=base._max_receives,
            _base=base, _queue=queue))  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._connection.open()
        self._started = True
        await self._call(self._create_group)

    async def close(self) -> None:
        self._started = False
        if self._base is self:
            for queue in self._named.values():
                await queue.close()
            await self._connection.close()

    def _redis(self) -> aioredis.Redis:
        client = self._connection.client
        if not self._started or client is None:
            raise UnavailableError(f"{SETTING}: the Redis run queue is not started (or closed)")
        return client

    def _open(self) -> _Connection:
        """The connection, with its scripts, if this queue is started."""
        self._redis()
        return self._connection

    async def _create_group(self) -> None:
        try:
            await self._redis().xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _call(self, op: Callable[[], Awaitable[T]], extra: float = 0.0) -> T:
        """Run ``op`` within a deadline; recreate the group once if the server lost it;
        connection trouble is ``UnavailableError``."""
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(OP_TIMEOUT + extra):
                    return await op()
            except redis_errors.ResponseError as exc:
                if isinstance(exc, _UNAVAILABLE_ERRORS) or str(exc).startswith(_UNAVAILABLE):
                    raise UnavailableError(f"{SETTING}: Redis at {self._where}: {exc}") from None
                if "NOGROUP" not in str(exc) or attempt == 2:
                    raise
            except (
                redis_errors.ConnectionError,
                redis_errors.TimeoutError,
                OSError,
                TimeoutError,
            ) as exc:
                raise UnavailableError(
                    f"{SETTING}: Redis at {self._where} is unavailable: {exc or type(exc).__name__}"
                ) from None
            await self._call(self._create_group)  # restarted empty: the group is gone
        raise AssertionError("unreachable")

    # -- the port ----------------------------------------------------------------------------

    async def send(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return

        async def op() -> None:
            async with self._redis().pipeline(transaction=True) as pipe:
                for run_id in run_ids:
                    pipe.xadd(self._stream, {"run": run_id})
                await pipe.execute()

        await self._call(op)

    async def receive(
        self, consumer: str, limit: int, *, wait: float, hold: float
    ) -> list[Delivery]:
        check_receive(consumer, limit, hold)
        self._receive_hold = hold
        if limit == 0:
            return []
        args: list[str | int] = [GROUP, consumer, int(hold * 1000), limit, self._max_receives]
        keys = [self._stream, self._dead]
        claimed: list[Any] = await self._call(lambda: self._open().claim(keys, args))
        taken = [
            Delivery(run_id=run, receipt=f"{entry}/{count}/{consumer}", deliveries=count)
            for entry, run, count in claimed
        ]
        if len(taken) < limit:
            block = None if taken or wait <= 0 else max(1, int(wait * 1000))
            taken += await self._read(consumer, limit - len(taken), block)
        return taken

    async def _read(self, consumer: str, count: int, block: int | None) -> list[Delivery]:
        async def op() -> Any:
            streams: dict[Any, Any] = {self._stream: ">"}
            return await self._redis().xreadgroup(GROUP, consumer, streams, count, block)

        reply = await self._call(op, extra=(block or 0) / 1000)
        return [
            Delivery(run_id=fields["run"], receipt=f"{entry}/1/{consumer}", deliveries=1)
            for _stream, entries in reply or ()
            for entry, fields in entries
        ]

    async def extend(self, receipts: Sequence[str], hold: float) -> None:
        if not (0 <= hold < math.inf):
            raise ValidationError(f"hold must be finite seconds >= 0, got {hold!r}", field="hold")
        # Receivers take an entry over once it is idle for their hold (XAUTOCLAIM min-idle),
        # so an idle time of (that hold - hold) leaves it hidden for ``hold`` more seconds;
        # a hold beyond the receivers' counts as theirs (idle times never go negative).
        idle = max(0, int((self._receive_hold - hold) * 1000))
        args: list[str] = [GROUP, str(idle)]
        for receipt in receipts:
            entry, count, consumer = [*receipt.split("/", 2), "", ""][:3]
            if entry and count.isdigit() and consumer:
                args += [entry, consumer, count]
        if len(args) > 2:
            await self._call(lambda: self._open().extend([self._stream], args))

    async def ack(self, receipts: Sequence[str]) -> None:
        entries = [receipt.split("/", 1)[0] for receipt in receipts]
        entries = [entry for entry in entries if _is_entry_id(entry)]
        if not entries:
            return

        async def op() -> None:
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.xack(self._stream, GROUP, *entries)
                pipe.xdel(self._stream, *entries)
                await pipe.execute()

        await self._call(op)

    async def drain_dead(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        runs: list[str] = await self._call(lambda: self._open().drain([self._dead], [limit]))
        return runs

    async def depth(self) -> int:
        length: int = await self._call(lambda: self._redis().xlen(self._stream))
        return length


def _is_entry_id(text: str) -> bool:
    """``ms-seq`` (an unknown but well-formed id is fine; a malformed one Redis refuses)."""
    ms, _, seq = text.partition("-")
    return ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()
