"""The RunQueue port: a message queue of run ids between pickers and workers (the seed's SQS).

The store stays the source of truth (DESIGN §3): a message says only "run R may be
ready"; a worker that receives it still claims R in the store with compare-and-set,
so a duplicate or stale message executes nothing. Anything lost in the queue is
re-derived from the store (runs QUEUED but not published, or published long ago and
still QUEUED), so losing the broker loses nothing. ``chronoq.adapters.queue`` puts a
RunQueue in front of a store's Dispatch.

Contract, for every adapter (tests/contract/test_runqueue.py):

* ``send`` is durable in the broker before it returns (all or none on memory and Redis;
  SQS sends batches of 10, so a failure may leave earlier batches sent: sending a run
  twice is harmless, the store decides).
* ``receive`` delivers at least once: a message received is invisible to other
  receivers for ``hold`` seconds; unless acknowledged by then it is delivered again
  with ``deliveries`` one higher. ``receive`` waits at most ``wait`` seconds for a
  first message (long poll) and returns at most ``limit``.
* ``extend`` pushes the hold of messages still in hand (a run heartbeating); an unknown
  receipt is ignored, and so is one of a message received again since (memory, Redis;
  SQS may still honour a superseded receipt handle, moto does).
* ``ack`` deletes messages for good; unknown receipts are fine.
* Order is best effort (SQS standard queues reorder); nobody relies on it.
* Dead letters: a message already received ``max_receives`` times (an adapter setting)
  is not delivered again; the receive that would have been one too many moves it to a
  dead-letter queue, which ``drain_dead`` empties (at most once: a run lost there is
  still QUEUED in the store and is re-derived from it).

Redis Streams: a stream and a consumer group; ``hold`` is the pending entry's idle time
(``XAUTOCLAIM`` takes over a dead consumer's entries), ``extend`` is ``XCLAIM ...
JUSTID``, ``ack`` is ``XACK`` + ``XDEL``. SQS: ``hold`` is the visibility timeout,
``extend`` is ``ChangeMessageVisibility``, ``deliveries`` is
``ApproximateReceiveCount``, and a redrive policy's dead-letter queue catches messages
received too often.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from chronoq.domain.queues import DEFAULT_QUEUE, check_queue
from chronoq.errors import ValidationError


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    run_id: str
    receipt: str
    """What ``extend`` and ``ack`` take (an SQS receipt handle, a stream entry id)."""
    deliveries: int
    """How many times this message has been received, this time included (≥ 1)."""


class RunQueue(Protocol):
    def named(self, queue: str) -> RunQueue:
        """The RunQueue of Chronoq queue ``queue`` (``domain.queues``) on the same broker
        with the same settings: its own messages, holds and dead letters, so a worker that
        serves queue ``a`` never receives a message of queue ``b``. ``named(DEFAULT_QUEUE)``
        is the queue of the URL itself (what a deployment used before queues existed); any
        other name maps to a broker queue derived from it, one-to-one. Always the same
        object for one name (a named queue's ``named`` answers as its base's), not started
        until ``start`` is called on it; ``close`` of the base closes every named one."""
        ...

    async def start(self) -> None:
        """Connect and create the queue if needed; safe to call twice. An unreachable
        broker raises ``UnavailableError``; a bad URL was refused by the factory."""
        ...

    async def close(self) -> None:
        """Close; safe to call twice."""
        ...

    async def send(self, run_ids: Sequence[str]) -> None:
        """Durably enqueue one message per run id before returning."""
        ...

    async def receive(
        self, consumer: str, limit: int, *, wait: float, hold: float
    ) -> list[Delivery]:
        """Up to ``limit`` messages, each hidden from other receivers for ``hold`` seconds;
        waits up to ``wait`` seconds for the first one."""
        ...

    async def extend(self, receipts: Sequence[str], hold: float) -> None:
        """Hide these messages for ``hold`` seconds from now: longer or shorter than the
        receive's hold (0 = visible again at once). Redis caps it at the receivers' hold."""
        ...

    async def ack(self, receipts: Sequence[str]) -> None:
        """Delete these messages for good."""
        ...

    async def drain_dead(self, limit: int) -> list[str]:
        """Remove and return up to ``limit`` run ids from the dead-letter queue."""
        ...

    async def depth(self) -> int:
        """Messages waiting or in flight (approximate), for the dispatch backlog gauge."""
        ...


def check_receive(consumer: str, limit: int, hold: float) -> None:
    """What every adapter's ``receive`` refuses (``ValidationError`` naming the argument)."""
    if not isinstance(consumer, str) or not consumer:
        raise ValidationError("consumer must be a non-empty string", field="consumer")
    if limit < 0:
        raise ValidationError(f"limit must be >= 0, got {limit!r}", field="limit")
    if not (0 <= hold < math.inf):
        raise ValidationError(f"hold must be finite seconds >= 0, got {hold!r}", field="hold")


Q = TypeVar("Q")


def memoized_named(base: Q, named: dict[str, Q], queue: str, make: Callable[[], Q]) -> Q:
    """``RunQueue.named`` for an adapter: the name checked (``ValidationError``), ``base``
    for ``DEFAULT_QUEUE``, else one object per name kept in ``named`` (the base's), made
    by ``make`` the first time."""
    if check_queue(queue) == DEFAULT_QUEUE:
        return base
    found = named.get(queue)
    if found is None:
        found = named[queue] = make()
    return found
