"""The ``sqs://`` dispatch URL: ``sqs://QUEUE?endpoint=URL&region=NAME&max_receives=N``.

* ``QUEUE``: the queue's name (letters, digits, ``-``, ``_``; at most 75 characters, so
  that ``QUEUE-dead``, its dead-letter queue, fits SQS's 80).
* ``endpoint``: ``http(s)://host[:port]`` of an SQS-compatible server (moto, ElasticMQ);
  omitted = Amazon SQS in ``region``.
* ``region``: default ``$AWS_REGION``, ``$AWS_DEFAULT_REGION``, else ``us-east-1``.
* ``max_receives``: the redrive policy's ``maxReceiveCount`` (1–1000, default 5).

Anything else is a one-line ``ConfigError`` naming the setting.

``QUEUE`` is Chronoq's default queue (``DEFAULT_QUEUE``). Any other Chronoq queue ``q``
(1-64 of ``A-Z a-z 0-9 _ . -``, ``domain.queues``) has its own SQS queue (and its
``-dead``), named ``named_queue(QUEUE, q)``:

    <QUEUE, first 40 chars>-q-<q, '.' as '_', cut to fit>-<12 hex of sha256(QUEUE NUL q)>

at most 75 characters, so its ``-dead`` fits SQS's 80 too, whatever the lengths of
``QUEUE`` and ``q``. The readable parts are for people looking at the SQS console; the
hash makes the mapping one-to-one (``a.b`` and ``a_b``, or two names cut to the same
prefix, differ in it), also between two deployments whose ``QUEUE`` names share their
first 40 characters. Avoid ``-q-`` in ``QUEUE`` itself, so no deployment's queue looks
like another's named one.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlsplit

from chronoq.domain.queues import DEFAULT_QUEUE, check_queue
from chronoq.errors import ConfigError

SETTING = "dispatch"
DEFAULT_MAX_RECEIVES = 5
_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}")  # MAX_NAME
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")
MAX_NAME = 75
"""The longest queue name whose ``-dead`` fits SQS's 80 characters."""
_BASE_PART = 40
_HASH = 12


def named_queue(base: str, queue: str) -> str:
    """The SQS queue name of Chronoq queue ``queue`` (not ``DEFAULT_QUEUE``) of the
    deployment whose queue is ``base`` (see the module docstring)."""
    digest = hashlib.sha256(f"{base}\0{check_queue(queue)}".encode()).hexdigest()[:_HASH]
    head = base[:_BASE_PART]
    room = MAX_NAME - len(head) - len("-q-") - len("-") - _HASH
    return f"{head}-q-{queue.replace('.', '_')[:room]}-{digest}"


@dataclass(frozen=True, slots=True)
class SqsUrl:
    queue: str
    endpoint: str | None
    region: str
    max_receives: int

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}-dead"

    def named(self, queue: str) -> SqsUrl:
        """The same settings on Chronoq queue ``queue``'s SQS queue (``named_queue``)."""
        if check_queue(queue) == DEFAULT_QUEUE:
            return self
        return replace(self, queue=named_queue(self.queue, queue))


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
