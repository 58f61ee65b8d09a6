"""One way to turn a ``redis://`` setting into a client, for every Redis adapter.

``redis://[user:password@]host[:port][/db][?key=prefix]``: ``key`` is the prefix of
every key the adapter creates (default ``chronoq``), so several clusters can share a
server. A bad URL is a ``ConfigError`` naming the setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis

from chronoq.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RedisUrl:
    url: str
    """The URL without the query (what redis-py takes)."""
    prefix: str

    def client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.url, socket_connect_timeout=5, health_check_interval=10)


def parse_redis_url(url: str, setting: str) -> RedisUrl:
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ConfigError(f"{setting}: {url!r} is not a redis://host:port/db URL")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{setting}: bad port in {url!r}") from None
    del port
    db = parts.path.lstrip("/")
    if (db and not db.isascii()) or (db and not db.isdigit()):
        raise ConfigError(f"{setting}: the database in {url!r} must be a number")
    query = parse_qs(parts.query)
    unknown = set(query) - {"key"}
    if unknown:
        raise ConfigError(f"{setting}: unknown option(s) {sorted(unknown)} in {url!r}")
    prefix = query.get("key", ["chronoq"])[0]
    if not prefix or not prefix.isascii() or not prefix.isprintable() or " " in prefix:
        raise ConfigError(f"{setting}: key prefix must be printable ASCII without spaces")
    return RedisUrl(parts._replace(query="", fragment="").geturl(), prefix)
