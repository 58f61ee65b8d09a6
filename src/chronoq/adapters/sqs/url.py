"""The ``sqs://`` dispatch URL: ``sqs://QUEUE?endpoint=URL&region=NAME&max_receives=N``.

* ``QUEUE``: the queue's name (letters, digits, ``-``, ``_``; at most 75 characters, so
  that ``QUEUE-dead``, its dead-letter queue, fits SQS's 80).
* ``endpoint``: ``http(s)://host[:port]`` of an SQS-compatible server (moto, ElasticMQ);
  omitted = Amazon SQS in ``region``.
* ``region``: default ``$AWS_REGION``, ``$AWS_DEFAULT_REGION``, else ``us-east-1``.
* ``max_receives``: the redrive policy's ``maxReceiveCount`` (1–1000, default 5).

Anything else is a one-line ``ConfigError`` naming the setting.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from chronoq.errors import ConfigError

SETTING = "dispatch"
DEFAULT_MAX_RECEIVES = 5
_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}")
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")


@dataclass(frozen=True, slots=True)
class SqsUrl:
    queue: str
    endpoint: str | None
    region: str
    max_receives: int

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}-dead"


def _fail(url: str, why: str) -> ConfigError:
    return ConfigError(f"{SETTING}: {why} in {url!r} (sqs://queue?endpoint=…&region=…)")


def parse_sqs_url(url: str) -> SqsUrl:
    parts = urlsplit(url)
    if parts.scheme != "sqs" or not parts.netloc:
        raise _fail(url, "not an sqs://queue URL")
    if parts.path not in ("", "/") or parts.fragment or not _NAME.fullmatch(parts.netloc):
        raise _fail(url, "the queue name must be 1-75 letters, digits, '-' or '_'")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - {"endpoint", "region", "max_receives"}
    if unknown:
        raise _fail(url, f"unknown option(s) {sorted(unknown)}")
    endpoint = options.get("endpoint") or None
    if endpoint is not None:
        target = urlsplit(endpoint)
        try:
            target.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise _fail(url, "bad endpoint port") from None
        if target.scheme not in ("http", "https") or not target.hostname:
            raise _fail(url, "endpoint must be http(s)://host[:port]")
    region = (
        options.get("region")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    if not _REGION.fullmatch(region):
        raise _fail(url, f"bad region {region!r}")
    text = options.get("max_receives", str(DEFAULT_MAX_RECEIVES))
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= 1000):
        raise _fail(url, "max_receives must be 1-1000")
    return SqsUrl(parts.netloc, endpoint, region, int(text))
