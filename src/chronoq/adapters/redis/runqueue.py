"""``RedisRunQueue``: the RunQueue port on a Redis stream with one consumer group.

Keys (``P`` is the URL's ``key`` prefix): ``P:{runq}`` is the stream (one entry per
message, field ``run``), read by the group ``workers``; ``P:{runq}:dead`` holds the
run ids of dead letters (one hash tag: a script touches both, also on a Redis Cluster).

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

from chronoq.adapters.redis.client import parse_redis_url
from chronoq.errors import ConfigError, UnavailableError, ValidationError
from chronoq.ports.runqueue import Delivery, check_receive

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

# Take over idle entries (at most 10 XAUTOCLAIM passes); move the over-delivered ones to
# the dead stream. Returns {id, run, count} per delivered entry.
_CLAIM = """
local limit, maxr = tonumber(ARGV[4]), tonumber(ARGV[5])
local out, cursor = {}, '0-0'
for _ = 1, 10 do
  local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor,
                           'COUNT', limit - #out)
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do
    local id, fields = entry[1], entry[2]
    if type(fields) == 'table' then
      local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
      local count = pending[1][4]
      if maxr > 0 and count > maxr then
        redis.call('XADD', KEYS[2], '*', 'run', fields[2])
        redis.call('XACK', KEYS[1], ARGV[1], id)
        redis.call('XDEL', KEYS[1], id)
      else
        table.insert(out, {id, fields[2], count})
      end
    end
  end
  if cursor == '0-0' or #out >= limit then break end
end
return out
"""

# ARGV: group, idle ms, then (id, consumer, count) triples: set the idle time of each
# entry still held by that consumer at that delivery count.
_EXTEND = """
for i = 3, #ARGV, 3 do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[i + 1] and p[1][4] == tonumber(ARGV[i + 2]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[i + 1], 0, ARGV[i], 'IDLE', ARGV[2], 'JUSTID')
  end
end
return 0
"""

_DRAIN = """
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
local runs = {}
for _, entry in ipairs(entries) do
  redis.call('XDEL', KEYS[1], entry[1])
  table.insert(runs, entry[2][2])
end
return runs
"""


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


class RedisRunQueue:
    """The run queue on Redis Streams (see the module docstring)."""

    def __init__(self, url: str, *, prefix: str = "chronoq", max_receives: int = 5) -> None:
        self._url = url
        self._where = f"{urlsplit(url).hostname}:{urlsplit(url).port or 6379}"
        self._stream = f"{prefix}:{{runq}}"
        self._dead = f"{prefix}:{{runq}}:dead"
        self._max_receives = max_receives
        self._client: aioredis.Redis | None = None
        self._receive_hold = 0.0
        """The hold of this process's receives: what ``extend`` counts from."""

    @classmethod
    def from_url(cls, url: str) -> RedisRunQueue:
        """``redis://host:port/db?key=prefix&max_receives=N``; a bad URL is a one-line
        ConfigError naming the setting."""
        rest, max_receives = _split_options(url)
        parsed = parse_redis_url(rest, SETTING)
        return cls(parsed.url, prefix=parsed.prefix, max_receives=max_receives)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self._url,
                socket_connect_timeout=5,
                health_check_interval=10,
                decode_responses=True,
            )
            self._claim = self._client.register_script(_CLAIM)
            self._extend = self._client.register_script(_EXTEND)
            self._drain = self._client.register_script(_DRAIN)
        await self._call(self._create_group)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise UnavailableError(f"{SETTING}: the Redis run queue is not started (or closed)")
        return self._client

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
        claimed: list[Any] = await self._call(lambda: self._claim([self._stream, self._dead], args))
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
            await self._call(lambda: self._extend([self._stream], args))

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
        runs: list[str] = await self._call(lambda: self._drain([self._dead], [limit]))
        return runs

    async def depth(self) -> int:
        length: int = await self._call(lambda: self._redis().xlen(self._stream))
        return length


def _is_entry_id(text: str) -> bool:
    """``ms-seq`` (an unknown but well-formed id is fine; a malformed one Redis refuses)."""
    ms, _, seq = text.partition("-")
    return ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()
