"""``MemoryRunQueue``: the RunQueue port in memory, for tests and the in-process roles.

Messages live in an insertion-ordered dict until acknowledged. ``receive`` hides each
message it returns for ``hold`` seconds of the injected clock's monotonic time and
hands out a receipt naming that delivery, so ``extend`` with the receipt of an earlier
delivery is ignored (as SQS refuses a superseded receipt handle). A message already
received ``max_receives`` times moves to the dead-letter list instead of being
delivered again (SQS's redrive policy). ``receive`` waits for a first message on an
event, bounded by ``wait`` on the clock. Every method but that wait runs without
awaiting, so each is atomic on the event loop. Unavailable before ``start`` and after
``close`` (closing keeps the messages).

``named(queue)``: another ``MemoryRunQueue`` sharing nothing with the base but the clock
and ``max_receives``, kept on the base (one object per name: the in-process roles share
one base, and a second object for a name would lose the messages sent to the first).
``named(DEFAULT_QUEUE)`` is the base; ``close`` of the base closes every named queue.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from chronoq.domain.clock import Clock
from chronoq.errors import UnavailableError, ValidationError
from chronoq.ports.runqueue import Delivery, check_receive, memoized_named


@dataclass(slots=True)
class _Message:
    run_id: str
    deliveries: int = 0
    held_until: float = -math.inf
    """Monotonic time until which a receiver holds it (in the past: free to receive)."""


def _check_hold(hold: float) -> None:
    if not (0 <= hold < math.inf):
        raise ValidationError(f"hold must be finite seconds >= 0, got {hold!r}", field="hold")


class MemoryRunQueue:
    """Send / receive with a hold / extend / ack, in memory (see the module docstring)."""

    def __init__(
        self, clock: Clock, *, max_receives: int = 5, _base: MemoryRunQueue | None = None
    ) -> None:
        if max_receives < 0:
            raise ValidationError("max_receives must be >= 0 (0 = no dead-letter queue)")
        self._clock = clock
        self._max_receives = max_receives
        self._base = self if _base is None else _base
        self._named: dict[str, MemoryRunQueue] = {}
        """The named queues (on the base only)."""
        self._open = False
        self._messages: dict[int, _Message] = {}
        self._dead: list[str] = []
        self._ids = itertools.count(1)
        self._sent = asyncio.Event()

    def named(self, queue: str) -> MemoryRunQueue:
        base = self._base
        return memoized_named(base, base._named, queue, lambda: MemoryRunQueue(
            base._clock, max_receives=base._max_receives, _base=base))  # fmt: skip

    async def start(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
        self._sent.set()  # wake a waiting receive, which then finds the queue closed
        if self._base is self:
            for queue in self._named.values():
                await queue.close()

    def _check_open(self) -> None:
        if not self._open:
            raise UnavailableError("the in-memory run queue is not started (or closed)")

    async def send(self, run_ids: Sequence[str]) -> None:
        self._check_open()
        for run_id in run_ids:
            self._messages[next(self._ids)] = _Message(run_id)
        if run_ids:
            self._sent.set()

    async def receive(
        self, consumer: str, limit: int, *, wait: float, hold: float
    ) -> list[Delivery]:
        check_receive(consumer, limit, hold)
        deadline = self._clock.monotonic() + max(0.0, wait)
        while True:
            self._check_open()
            taken = self._take(limit, hold)
            left = deadline - self._clock.monotonic()
            if taken or limit == 0 or left <= 0:
                return taken
            self._sent.clear()
            # A hold running out wakes nobody: poll again after at most 50 ms of clock.
            await self._clock.wait(self._sent, min(left, 0.05))

    def _take(self, limit: int, hold: float) -> list[Delivery]:
        now = self._clock.monotonic()
        taken: list[Delivery] = []
        for message_id, message in list(self._messages.items()):
            if len(taken) >= limit:
                break
            if message.held_until > now:
                continue  # another receiver holds it
            if self._max_receives and message.deliveries >= self._max_receives:
                del self._messages[message_id]
                self._dead.append(message.run_id)
                continue
            message.deliveries += 1
            message.held_until = now + hold
            receipt = f"{message_id}.{message.deliveries}"
            taken.append(
                Delivery(run_id=message.run_id, receipt=receipt, deliveries=message.deliveries)
            )
        return taken

    def _current(self, receipt: str) -> tuple[int, _Message] | None:
        """The message this receipt names, if the receipt is of its latest delivery."""
        head, _, count = receipt.partition(".")
        if not (head.isdigit() and count.isdigit()):
            return None
        message = self._messages.get(int(head))
        if message is None or message.deliveries != int(count):
            return None
        return int(head), message

    async def extend(self, receipts: Sequence[str], hold: float) -> None:
        _check_hold(hold)
        self._check_open()
        now = self._clock.monotonic()
        for receipt in receipts:
            found = self._current(receipt)
            if found is not None:
                found[1].held_until = now + hold

    async def ack(self, receipts: Sequence[str]) -> None:
        self._check_open()
        for receipt in receipts:
            head = receipt.partition(".")[0]
            if head.isdigit():
                self._messages.pop(int(head), None)

    async def drain_dead(self, limit: int) -> list[str]:
        self._check_open()
        drained, self._dead = self._dead[:limit], self._dead[limit:]
        return drained

    async def depth(self) -> int:
        self._check_open()
        return len(self._messages)
