"""Driver choice for PostgresStore: asyncpg vs psycopg 3 on our statement shapes.

Run: ``pip install "psycopg[binary]" asyncpg; python bench/drivers/compare.py``
(needs PostgreSQL on 127.0.0.1:5432; it creates and drops a table ``drv``).
Results are recorded in docs/distributed.md.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SETUP = (
    "DROP TABLE IF EXISTS drv; "
    "CREATE TABLE drv (id uuid primary key, a text, b bigint, due timestamptz)"
)
UNNEST = "INSERT INTO drv SELECT * FROM unnest({0}::uuid[], {1}::text[], {2}::bigint[], {3}::timestamptz[])"  # noqa: E501


def _batch(size: int) -> tuple[list[uuid.UUID], list[str], list[int], list[None]]:
    return [uuid.uuid4() for _ in range(size)], ["x"] * size, list(range(size)), [None] * size


async def with_asyncpg(rows: int, batch: int) -> tuple[float, float]:
    import asyncpg

    conn: Any = await asyncpg.connect(DSN)
    await conn.execute(SETUP)
    insert = UNNEST.format("$1", "$2", "$3", "$4")
    started = time.perf_counter()
    for _ in range(0, rows, batch):
        ids, *rest = _batch(batch)
        await conn.execute(insert, ids, *rest)
    inserts = rows / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(2000):
        await conn.fetchval("SELECT b FROM drv WHERE id = $1", ids[i % batch])
    selects = 2000 / (time.perf_counter() - started)
    await conn.execute("DROP TABLE drv")
    await conn.close()
    return inserts, selects


async def with_psycopg(rows: int, batch: int) -> tuple[float, float]:
    import psycopg

    conn: Any = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    await conn.execute(SETUP)
    insert = UNNEST.format("%s", "%s", "%s", "%s")
    started = time.perf_counter()
    for _ in range(0, rows, batch):
        ids, *rest = _batch(batch)
        await conn.execute(insert, (ids, *rest))
    inserts = rows / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(2000):
        await (await conn.execute("SELECT b FROM drv WHERE id = %s", (ids[i % batch],))).fetchone()
    selects = 2000 / (time.perf_counter() - started)
    await conn.execute("DROP TABLE drv")
    await conn.close()
    return inserts, selects


async def main() -> None:
    drivers: dict[str, Callable[[int, int], Awaitable[tuple[float, float]]]] = {
        "asyncpg": with_asyncpg,
        "psycopg3": with_psycopg,
    }
    for name, run in drivers.items():
        batched, single, selects = [], [], []
        for _ in range(3):
            rate, select_rate = await run(50_000, 1000)
            batched.append(rate)
            selects.append(select_rate)
            single.append((await run(2000, 1))[0])
        print(
            f"{name}: batch-1000 insert {statistics.median(batched):,.0f} rows/s;"
            f" single insert {statistics.median(single):,.0f}/s;"
            f" point select {statistics.median(selects):,.0f}/s"
        )


if __name__ == "__main__":
    asyncio.run(main())
