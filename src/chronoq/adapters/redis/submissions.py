"""``RedisSubmissionLog``: the SubmissionLog port on a Redis Stream (``--ingest redis://``).

Keys (``P`` = the URL's ``key`` prefix, default ``chronoq``):

* ``P:{submissions}``: the stream; one entry per job, fields ``k`` (index key) and
  ``j`` (the job as JSON); the writers are its consumer group ``writers``.
* ``P:{submissions}:index``: hash ``len(job_id):job_id:user_id`` -> entry id, for
  ``get_job`` (read-your-writes, scoped by user); the entry's ``ack`` removes it.
* ``P:{submissions}:dead``: entries whose JSON no longer decodes as a job (moved there,
  never dropped silently, so one bad entry cannot wedge the log).

Each operation is one Lua script (atomic on the server; Redis 7 writes its effects to
the AOF as one MULTI/EXEC, so a crash keeps all of an append or none):

* ``append``: XADD + HSET per job. Durable when it returns only with AOF on and
  ``appendfsync always`` (docs/backends/redis.md): we check at start and warn.
* ``read``: the hold is the server's own idle time of a pending entry. A reader joins
  the group as ``consumer|hold_ms``, so every pending entry carries the hold it was
  read with; entries idle at least that long (their reader died before ``ack``) are
  XCLAIMed first (oldest first), then new ones come from XREADGROUP ``>``. Holds
  therefore differ per read, as the port asks, which XAUTOCLAIM's one min-idle cannot.
* ``ack``: HDEL (only if the index still points at this entry) + XACK + XDEL.

Redis unreachable, loading its AOF, out of memory or read-only: ``UnavailableError``
(the api answers 503 and nothing was appended).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chronoq.adapters.redis.client import parse_redis_url
from chronoq.adapters.redis.submission_scripts import ACK, APPEND, READ
from chronoq.domain.jobs import Job
from chronoq.errors import UnavailableError, ValidationError
from chronoq.ports.submissions import LoggedJob

log = logging.getLogger("chronoq.redis")

GROUP = "writers"
SETTING = "--ingest"
_UNAVAILABLE = {"OOM", "LOADING", "BUSY", "MISCONF", "READONLY", "MASTERDOWN", "NOREPLICAS",
                "TRYAGAIN", "CLUSTERDOWN"}  # fmt: skip
_ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_MAX_U64 = 2**64 - 1
_CHUNK = 1000
"""Jobs per append script call (Lua's argument stack is bounded)."""
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Job)


class RedisSubmissionLog:
    """The SubmissionLog over a Redis Stream (see the module docstring)."""

    def __init__(self, url: str, prefix: str, *, socket_timeout: float = 10.0) -> None:
        self._url = url
        self._socket_timeout = socket_timeout
        self.stream = f"{prefix}:{{submissions}}"
        self.index = f"{self.stream}:index"
        self.dead = f"{self.stream}:dead"
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

    @classmethod
    def from_url(cls, url: str) -> RedisSubmissionLog:
        """``redis://host:port/db?key=prefix``; a bad URL is a ``ConfigError``."""
        parsed = parse_redis_url(url, SETTING)
        return cls(parsed.url, parsed.prefix)

    async def start(self) -> None:
        """Connect, create the group, and warn when appends would not survive a crash."""
        if self._client is not None:
            return
        client = aioredis.Redis.from_url(
            self._url, socket_connect_timeout=5, socket_timeout=self._socket_timeout,
            health_check_interval=10,
        )  # fmt: skip
        try:
            await client.ping()
            with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists already
                await client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            await _warn_unless_durable(client)
        except RedisError as exc:
            await client.aclose()
            raise UnavailableError(
                f"{SETTING}: Redis at {self._url} is unreachable: {exc}"
            ) from exc
        scripts = {"append": APPEND, "read": READ, "ack": ACK}
        self._scripts = {name: client.register_script(src) for name, src in scripts.items()}
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def append(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        args: list[bytes] = []
        try:
            for job in jobs:
                args += [_index_key(job.user_id, job.job_id, strict=True), _ENCODER.encode(job)]
        except (UnicodeEncodeError, msgspec.EncodeError) as exc:  # e.g. a lone surrogate
            raise ValidationError(f"append submissions: a job cannot be encoded: {exc}") from exc
        if len(args) > 2 * _CHUNK:
            # One MULTI/EXEC around the chunks keeps a big batch all or none.
            pipe = self._connected().pipeline(transaction=True)
            for first in range(0, len(args), 2 * _CHUNK):
                chunk = args[first : first + 2 * _CHUNK]
                pipe.eval(APPEND, 2, self.stream, self.index, *chunk)
            with _translated("append submissions"):
                await pipe.execute()
            return
        with _translated("append submissions"):
            await self._script("append")(keys=[self.stream, self.index], args=args)

    async def read(self, consumer: str, limit: int, *, hold: float) -> list[LoggedJob]:
        if not isinstance(consumer, str) or not consumer:
            raise ValidationError("consumer must be a non-empty string", field="consumer")
        if not (isinstance(hold, int | float) and math.isfinite(hold) and hold >= 0):
            raise ValidationError(f"hold must be >= 0 seconds, got {hold!r}", field="hold")
        if limit < 0:
            raise ValidationError(f"limit must be >= 0, got {limit!r}", field="limit")
        if limit == 0:
            return []
        me = f"{consumer}|{round(hold * 1000)}"
        with _translated("read submissions"):
            rows = await self._script("read")(keys=[self.stream], args=[GROUP, me, limit])
        taken: list[LoggedJob] = []
        poison: list[tuple[str, dict[bytes, bytes]]] = []
        for raw_id, flat in rows:
            entry_id = raw_id.decode()
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            try:
                taken.append(LoggedJob(entry_id=entry_id, job=_DECODER.decode(fields[b"j"])))
            except (KeyError, msgspec.DecodeError):
                poison.append((entry_id, fields))
        if poison:
            await self._bury(poison)
        return taken

    async def ack(self, entry_ids: Sequence[str]) -> None:
        ids = [e for e in entry_ids if _is_entry_id(e)]
        if not ids:
            return
        with _translated("ack submissions"):
            await self._script("ack")(keys=[self.stream, self.index], args=[GROUP, *ids])

    async def get_job(self, user_id: str, job_id: str) -> Job | None:
        client = self._connected()
        with _translated("get submission"):
            entry_id = await client.hget(self.index, _index_key(user_id, job_id, strict=False))
            if entry_id is None:
                return None
            entries = await client.xrange(self.stream, entry_id, entry_id)
        if not entries:
            return None  # acknowledged meanwhile: the store has it now
        fields: Any = entries[0][1]
        body = fields.get(b"j") if fields else None
        try:
            job = _DECODER.decode(body) if body is not None else None
        except msgspec.DecodeError:
            return None
        return job if job is not None and job.user_id == user_id else None

    async def _bury(self, poison: list[tuple[str, dict[bytes, bytes]]]) -> None:
        """Move entries that are not jobs to the dead stream, then acknowledge them."""
        for entry_id, _fields in poison:
            log.error("submission log: entry %s is not a job; moved to %s", entry_id, self.dead)
        with _translated("bury submissions"):
            pipe = self._connected().pipeline(transaction=True)
            for entry_id, fields in poison:
                dead: dict[Any, Any] = {b"from": entry_id.encode(), **fields}
                pipe.xadd(self.dead, dead)
            await pipe.execute()
        await self.ack([entry_id for entry_id, _f in poison])

    def _script(self, name: str) -> Any:
        self._connected()
        return self._scripts[name]

    def _connected(self) -> aioredis.Redis:
        if self._client is None:
            raise UnavailableError("the Redis submission log is not started (or closed)")
        return self._client


def _index_key(user_id: str, job_id: str, *, strict: bool) -> bytes:
    """Unambiguous per (job, user): the job id's length comes first."""
    errors = "strict" if strict else "surrogatepass"  # a lookup never raises: it misses
    return f"{len(job_id)}:{job_id}:{user_id}".encode(errors=errors)


def _is_entry_id(entry_id: object) -> bool:
    """Whether ``entry_id`` could be one of ours (anything else matches no entry)."""
    if not isinstance(entry_id, str) or not _ENTRY_ID.fullmatch(entry_id):
        return False
    ms, seq = entry_id.split("-")
    return int(ms) <= _MAX_U64 and int(seq) <= _MAX_U64


async def _warn_unless_durable(client: aioredis.Redis) -> None:
    """An api answers 201 after ``append``: without an fsync per write a crash of Redis,
    and with eviction a full Redis, loses jobs already answered. Managed Redis may refuse
    CONFIG: then say nothing."""
    config: dict[str, str] = {}
    try:
        for pattern in ("append*", "maxmemory-policy"):
            reply: dict[Any, Any] = await client.config_get(pattern)
            config.update({_text(k): _text(v) for k, v in reply.items()})
    except ResponseError:
        return
    if config.get("appendonly") != "yes" or config.get("appendfsync") != "always":
        log.warning(
            "%s: Redis has appendonly=%s appendfsync=%s: jobs answered 201 can be lost if"
            " Redis crashes (docs/backends/redis.md: appendonly yes, appendfsync always)",
            SETTING, config.get("appendonly"), config.get("appendfsync"),
        )  # fmt: skip
    if config.get("maxmemory-policy", "noeviction") != "noeviction":
        log.warning(
            "%s: Redis has maxmemory-policy=%s: a full Redis evicts accepted jobs"
            " (docs/backends/redis.md: maxmemory-policy noeviction)",
            SETTING, config["maxmemory-policy"],
        )  # fmt: skip


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def _translated(operation: str) -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise UnavailableError(
            f"{operation}: the Redis submission log is unavailable: {exc}"
        ) from exc
    except ResponseError as exc:
        if str(exc).split(" ", 1)[0] in _UNAVAILABLE:
            raise UnavailableError(f"{operation}: Redis refuses writes now: {exc}") from exc
        raise
