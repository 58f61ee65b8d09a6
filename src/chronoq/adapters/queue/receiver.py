"""``QueueSet``: one process's view of the broker queues, one per Chronoq queue.

Each Chronoq queue has its own broker queue (``RunQueue.named``), so a worker of queues
``a, b`` receives only their messages. A worker receives from several at once:

* first, what a long poll of an earlier call received since (see below);
* then one quick receive (no wait) per queue, until it has ``limit`` messages, starting
  at the next queue each call (a busy queue never keeps the others' messages unread);
* only when every queue was empty does it wait: one long poll per queue, all at once,
  and the first to answer ends the wait. The others are never cancelled — a receive
  cancelled at the wrong moment may have taken messages the broker then hides for a
  whole hold — they stay in flight, and the next call collects what they received.

A named queue is started the first time it is used. Messages keep the name of the
queue they came from, so extends and acks go back to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chronoq.domain.queues import DEFAULT_QUEUE
from chronoq.ports.runqueue import Delivery, RunQueue

log = logging.getLogger("chronoq")


@dataclass(frozen=True, slots=True)
class Held:
    """A message received from queue ``queue`` (what extend and ack need)."""

    queue: str
    delivery: Delivery


class QueueSet:
    """The named queues of ``base`` this process sends to and receives from."""

    def __init__(self, base: RunQueue) -> None:
        self._base = base
        self._started: dict[str, RunQueue] = {DEFAULT_QUEUE: base}  # base: started by start
        self._polls: dict[str, asyncio.Task[list[Delivery]]] = {}
        """Long polls still in flight, one per queue at most (see the module docstring)."""
        self._turn = 0

    async def get(self, name: str) -> RunQueue:
        """The broker queue of Chronoq queue ``name``, started."""
        queue = self._started.get(name)
        if queue is None:
            queue = self._base.named(name)
            await queue.start()
            self._started[name] = queue
        return queue

    def started(self) -> dict[str, RunQueue]:
        """The queues used so far (always the default one, which the base is)."""
        return dict(self._started)

    async def start(self) -> None:
        await self._base.start()

    async def close(self) -> None:
        polls, self._polls = list(self._polls.values()), {}
        for task in polls:
            task.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        await self._base.close()  # closes every named one (``RunQueue.named``)

    async def send(self, runs: Iterable[tuple[str, str]]) -> None:
        """Send one message per (run id, queue) to that queue's broker queue."""
        by_queue: dict[str, list[str]] = {}
        for run_id, queue in runs:
            by_queue.setdefault(queue, []).append(run_id)
        for name, run_ids in by_queue.items():
            await (await self.get(name)).send(run_ids)

    async def receive(
        self, consumer: str, names: Sequence[str], limit: int, *, wait: float, hold: float
    ) -> list[Held]:
        """Up to about ``limit`` messages from these queues (a long poll that answers late
        may add more: the caller hands back what it does not use)."""
        got = self._collect()
        if names:  # each call starts at the next queue: none is always read last
            self._turn = (self._turn + 1) % len(names)
            names = [*names[self._turn :], *names[: self._turn]]
        for name in names:
            if len(got) >= limit:
                return got
            if name not in self._polls:
                queue = await self.get(name)
                quick = await queue.receive(consumer, limit - len(got), wait=0, hold=hold)
                got += [Held(name, d) for d in quick]
        if got or wait <= 0 or not names:
            return got
        for name in names:
            if name not in self._polls:
                queue = await self.get(name)
                poll = queue.receive(consumer, limit, wait=wait, hold=hold)
                self._polls[name] = asyncio.create_task(poll, name=f"runqueue-poll-{name}")
        await asyncio.wait([self._polls[n] for n in names], return_when=asyncio.FIRST_COMPLETED)
        return self._collect()

    def _collect(self) -> list[Held]:
        """The messages of every finished long poll (whichever queues this call asked for).
        A poll that failed raises its error if nothing else came in (the broker is down:
        the worker backs off)."""
        got: list[Held] = []
        failed: BaseException | None = None
        for name, task in list(self._polls.items()):
            if not task.done():
                continue
            del self._polls[name]
            if task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                failed = failed or error
            else:
                got += [Held(name, d) for d in task.result()]
        if failed is not None and not got:
            raise failed
        if failed is not None:
            log.warning("dispatch: a receive on the run queue failed (%s)", failed)
        return got

    async def extend(self, held: Sequence[Held], hold: float) -> None:
        for name, receipts in _by_queue(held).items():
            await (await self.get(name)).extend(receipts, hold)

    async def ack(self, held: Sequence[Held]) -> None:
        for name, receipts in _by_queue(held).items():
            await (await self.get(name)).ack(receipts)


def _by_queue(held: Sequence[Held]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in held:
        out.setdefault(item.queue, []).append(item.delivery.receipt)
    return out
