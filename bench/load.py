"""The timed load loop: many keep-alive connections, one request in flight on each."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.httpclient import Connection


@dataclass(slots=True)
class LoadResult:
    started: float
    """perf_counter just before the first request was written."""
    finished: float
    """perf_counter when the last response was read."""
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    first_error: str | None = None

    @property
    def responses(self) -> int:
        return len(self.latencies_s)

    @property
    def elapsed_s(self) -> float:
        return self.finished - self.started

    def unexpected(self, expect: int) -> int:
        return sum(count for status, count in self.statuses.items() if status != expect)


async def open_connections(host: str, ports: Sequence[int], count: int) -> list[Connection]:
    """``count`` keep-alive connections, spread round-robin over ``ports``."""
    conns = [Connection(host, ports[i % len(ports)]) for i in range(count)]
    await asyncio.gather(*(conn.connect() for conn in conns))
    return conns


async def close_connections(conns: Sequence[Connection]) -> None:
    await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)


async def drive(
    conns: Sequence[Connection],
    requests: Sequence[bytes],
    *,
    expect: int,
    keep_bodies: bool = False,
    result: LoadResult | None = None,
) -> LoadResult:
    """Send every request once, spread over ``conns`` (a shared work queue).

    Pass ``result`` to watch progress (``responses``) from another task while it runs.
    """
    total = len(requests)
    next_index = 0
    result = result or LoadResult(started=0.0, finished=0.0)
    if keep_bodies:
        result.bodies = [b""] * total
    statuses = result.statuses
    latencies = result.latencies_s

    async def worker(conn: Connection) -> None:
        nonlocal next_index
        perf = time.perf_counter
        while next_index < total:
            index = next_index
            next_index += 1
            sent = perf()
            response = await conn.request(requests[index])
            latencies.append(perf() - sent)
            statuses[response.status] += 1
            if response.status != expect and result.first_error is None:
                result.first_error = f"HTTP {response.status}: {response.body[:300]!r}"
            if keep_bodies:
                result.bodies[index] = response.body

    result.started = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in conns))
    result.finished = time.perf_counter()
    return result
