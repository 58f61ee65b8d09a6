"""A small client of etcd's v3 JSON gateway (``/v3/...``, etcd >= 3.4) over ``httpx``.

No gRPC or protobuf: the gateway takes the same requests as JSON, with keys and values
base64-encoded and 64-bit integers as strings. Only what ``EtcdCoordination`` needs:
range, put, txn, lease grant / keepalive / revoke, and a status probe.

Endpoints: a URL may name several cluster members (``etcd://h1:p1,h2:p2/prefix``). A
request goes to the member that answered last; on a transport failure, a timeout or
an etcd error that means "this member cannot serve now" (no leader, not ready, timed
out) it tries the next one, and when every member failed it raises
``UnavailableError``. Each attempt is bounded by ``timeout``, so an unreachable
cluster is an ``UnavailableError`` within ``len(endpoints) * timeout`` seconds.

A request that timed out may still have been applied (an ambiguous write). Callers
are written for that: every write is a compare-and-set or idempotent, and a lease
granted by a lost reply expires by itself.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from chronoq.errors import ConfigError, UnavailableError

SETTING = "coordination"

NOT_FOUND = 5
"""gRPC status of ``etcdserver: requested lease not found``."""


class EtcdError(UnavailableError):
    """An error etcd answered about the request itself (a lease not found, ...), not about
    the cluster's health. Callers handle the ones they expect; any other one reaches the
    caller as the ``UnavailableError`` it also is (nothing was changed)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class EtcdUrl:
    endpoints: tuple[str, ...]
    """``http://host:port`` of each member."""
    prefix: str
    """Every key of this coordination starts with ``<prefix>/``."""
    timeout: float
    member_lease: float
    keep_revisions: int
    """History the leader leaves when it compacts etcd (0: never compacts)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    def json(self) -> Any:
        return json.loads(self.value)


def parse_etcd_url(url: str) -> EtcdUrl:
    """``etcd://host:port[,host:port...][/prefix][?timeout=S&member_lease=S&keep_revisions=N]``."""
    parts = urlsplit(url)
    if parts.scheme != "etcd" or not parts.netloc:
        raise ConfigError(f"{SETTING}: {url!r} is not an etcd://host:port[/prefix] URL")
    endpoints = []
    for hostport in parts.netloc.split(","):
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{SETTING}: {hostport!r} in {url!r} is not host:port")
        endpoints.append(f"http://{host}:{int(port)}")
    prefix = parts.path.strip("/") or "chronoq"
    if not prefix.isascii() or not prefix.isprintable() or " " in prefix:
        raise ConfigError(f"{SETTING}: the key prefix in {url!r} must be printable ASCII")
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(options) - {"timeout", "member_lease", "keep_revisions"}
    if unknown:
        raise ConfigError(f"{SETTING}: unknown option(s) {sorted(unknown)} in {url!r}")
    timeout = _seconds(options.get("timeout", "2"), "timeout", url, low=0.05)
    member_lease = _seconds(options.get("member_lease", "60"), "member_lease", url, low=2)
    keep = options.get("keep_revisions", "10000")
    if not keep.isdigit() or not (keep == "0" or 100 <= int(keep) <= 10**9):
        raise ConfigError(
            f"{SETTING}: keep_revisions must be 0 or 100-1e9, got {keep!r} in {url!r}"
        )
    return EtcdUrl(tuple(endpoints), prefix, timeout, member_lease, int(keep))


def _seconds(raw: str, name: str, url: str, *, low: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not low <= value <= 3600:
        raise ConfigError(f"{SETTING}: {name} must be {low}-3600 seconds, got {raw!r} in {url!r}")
    return value


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def range_end(prefix: str) -> str:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return b64(bytes(raw))


def kvs(response: Any) -> list[KeyValue]:
    """The key-values of a range response (an empty list when none matched)."""
    return [
        KeyValue(
            key=base64.b64decode(kv["key"]).decode(),
            value=base64.b64decode(kv.get("value", "")),
            create_revision=int(kv.get("create_revision", 0)),
            mod_revision=int(kv.get("mod_revision", 0)),
            lease=int(kv.get("lease", 0)),
        )
        for kv in response.get("kvs", ())
    ]


def revision(response: Any) -> int:
    return int(response.get("header", {}).get("revision", 0))


class _QuietRequests(logging.Filter):
    """Drops httpx's INFO line per request to these endpoints: the coordination makes
    several every second, and failures surface as ``UnavailableError`` anyway."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        super().__init__()
        self._endpoints = tuple(endpoints)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (len(args) > 1 and str(args[1]).startswith(self._endpoints))


class EtcdClient:
    """JSON-gateway requests with endpoint failover; ``open`` before use, ``close`` after."""

    def __init__(self, endpoints: Sequence[str], timeout: float) -> None:
        self._endpoints = list(endpoints)
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._current = 0
        self.revision = 0
        """The newest store revision any answer carried (for compaction)."""
        self.raft_term = 0
        """etcd's Raft term in the newest answer: it grows at every election of an etcd leader."""
        self._quiet = _QuietRequests(self._endpoints)

    async def open(self) -> None:
        if self._http is None:
            limits = httpx.Limits(max_connections=16, max_keepalive_connections=8)
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(self._timeout), limits=limits)
            logging.getLogger("httpx").addFilter(self._quiet)
        await self.call("/v3/maintenance/status", {})  # reachable and serving, or raise

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            logging.getLogger("httpx").removeFilter(self._quiet)
            await http.aclose()

    async def call(self, path: str, body: dict[str, Any]) -> Any:
        """POST ``body`` to ``path`` on the first member that serves it."""
        http = self._http
        if http is None:
            raise UnavailableError("etcd coordination is not started (or already closed)")
        failures = []
        for step in range(len(self._endpoints)):
            index = (self._current + step) % len(self._endpoints)
            endpoint = self._endpoints[index]
            try:
                response = await http.post(endpoint + path, json=body)
                answer = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                failures.append(f"{endpoint}: {type(exc).__name__}")
                continue
            error = answer.get("error") if isinstance(answer, dict) else None
            if response.status_code == 200 and not error:
                self._current = index
                answer = answer.get("result", answer) if path.endswith("keepalive") else answer
                self.revision = max(self.revision, revision(answer))
                header = answer.get("header", {}) if isinstance(answer, dict) else {}
                self.raft_term = max(self.raft_term, int(header.get("raft_term", 0)))
                return answer
            code = int(answer.get("code", 0)) if isinstance(answer, dict) else 0
            if code in (3, NOT_FOUND, 9):  # invalid argument, not found, failed precondition
                raise EtcdError(code, str(error))
            failures.append(f"{endpoint}: {error or response.status_code}")
        raise UnavailableError(f"{SETTING}: etcd unavailable ({'; '.join(failures)})")

    # -- the requests the coordination uses ----------------------------------------------

    async def range(self, key: str, *, prefix: bool = False) -> tuple[list[KeyValue], int]:
        body: dict[str, Any] = {"key": b64(key)}
        if prefix:
            body["range_end"] = range_end(key)
        answer = await self.call("/v3/kv/range", body)
        return kvs(answer), revision(answer)

    async def txn(
        self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> tuple[bool, list[Any]]:  # fmt: skip
        """Run a transaction: (whether the compares held, the responses of the branch run)."""
        body = {"compare": compare, "success": success, "failure": failure or []}
        answer = await self.call("/v3/kv/txn", body)
        return bool(answer.get("succeeded", False)), list(answer.get("responses", ()))

    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, the TTL etcd granted, which may be raised to its minimum)."""
        answer = await self.call("/v3/lease/grant", {"TTL": str(ttl)})
        return int(answer["ID"]), int(answer["TTL"])

    async def keepalive(self, lease: int) -> int:
        """Renew a lease; its TTL again, or 0 if it is gone (expired or revoked)."""
        answer = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(answer.get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        """Revoke a lease and delete its keys; a lease already gone is fine."""
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as exc:
            if exc.code != NOT_FOUND:
                raise

    async def compact(self, before: int) -> None:
        """Drop the history older than revision ``before`` (the current values stay)."""
        await self.call("/v3/kv/compaction", {"revision": str(before)})

    async def delete(self, key: str) -> None:
        await self.call("/v3/kv/deleterange", {"key": b64(key)})


def put(key: str, value: str, lease: int = 0) -> dict[str, Any]:
    """A txn operation writing ``key``."""
    op: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        op["lease"] = str(lease)
    return {"request_put": op}


def get(key: str) -> dict[str, Any]:
    """A txn operation reading ``key``."""
    return {"request_range": {"key": b64(key)}}


def same(key: str, target: str, value: int) -> dict[str, Any]:
    """A txn compare: ``key``'s ``CREATE``/``MOD`` revision equals ``value`` (0: absent)."""
    field = {"CREATE": "create_revision", "MOD": "mod_revision"}[target]
    return {"key": b64(key), "target": target, "result": "EQUAL", field: str(value)}
