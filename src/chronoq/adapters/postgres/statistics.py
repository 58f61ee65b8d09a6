"""Planner statistics that keep up with a young database (issue 11: fast from the first
minute).

The hazard, measured (docs/benchmarks.md, *Fresh databases*): asyncpg prepares every
statement, and after five runs PostgreSQL may keep a *generic* plan for it, re-planned
only when the table's statistics change. A table never analyzed (``reltuples = -1``)
is planned as if it had at least 10 pages, so the hot statements get index plans. But
once autovacuum analyzes it — after 50 changed rows, at its first visit, while the
table is still tiny — the cached plans become sequential scans, and they stay while the
table grows 10- or 100-fold until autovacuum's next visit (once a minute at best): one
run or job lookup then reads the whole table (measured: 39 ms instead of 0.08 ms at
20,000 rows). ANALYZE at migration end would do the same harm at once (an empty table
analyzed looks empty), so the migrations do not.

So the store itself asks for statistics when a table has outgrown them: every
``CHECK_EVERY`` rows it wrote (jobs inserted, runs completed: each job has a run),
one cheap query compares each table's live rows with the rows its statistics were
taken at, and a table that has at least doubled (and holds ``MIN_ROWS`` or more) is
analyzed, in the background, on a pooled connection, at most one at a time per
process (``SKIP_LOCKED``: never waits behind autovacuum or another process's ANALYZE).
ANALYZE also invalidates the cached plans, which are then made again for the table's
real size. Doubling bounds the work to a logarithm of the table's size, and a plan
made for at least half the rows; autovacuum's own 10% rule takes over in the long run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TABLES = ("jobs", "job_runs")
"""The tables the hot statements read: named here, never taken from input."""
MIN_ROWS = 1000
"""Below this the never-analyzed estimate (at least 10 pages) plans as well as statistics."""
GROWTH = 2.0
CHECK_EVERY = 1000

GROWN = (
    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
    " WHERE s.schemaname = current_schema() AND s.relname = ANY($1::text[])"
    " AND s.n_live_tup >= greatest($2::float8, $3::float8 * c.reltuples)"
    " ORDER BY s.relname"
)
"""Tables whose live rows (the cumulative statistics, flushed by each backend within about
a second) reached ``MIN_ROWS`` and ``GROWTH`` × the rows of their last ANALYZE (or VACUUM;
-1 when never)."""


class GrowthAnalyzer:
    """``wrote(rows)`` after each write; ANALYZEs grown tables off the caller's path."""

    def __init__(self, pool: Callable[[], Any], *, check_every: int = CHECK_EVERY) -> None:
        self._pool = pool
        self._check_every = check_every
        self._pending = 0
        self._task: asyncio.Task[None] | None = None
        self.analyzed: list[tuple[str, ...]] = []
        """What each ANALYZE covered, in order (for tests and logs)."""

    def wrote(self, rows: int) -> None:
        """Count ``rows`` written; past ``check_every`` since the last check, check (in the
        background) unless a check is still running."""
        self._pending += rows
        if self._pending < self._check_every:
            return
        if self._task is not None and not self._task.done():
            return
        self._pending = 0
        self._task = asyncio.get_running_loop().create_task(self._check())

    async def _check(self) -> None:
        try:
            async with self._pool().acquire() as conn:
                grown = [r[0] for r in await conn.fetch(GROWN, list(TABLES), MIN_ROWS, GROWTH)]
                grown = [t for t in grown if t in TABLES]
                if grown:
                    await conn.execute("ANALYZE (SKIP_LOCKED) " + ", ".join(grown))
                    self.analyzed.append(tuple(grown))
                    log.debug("analyzed %s: they had outgrown their statistics", grown)
        except Exception as exc:  # statistics are an optimisation: never fail a caller
            log.debug("growth check failed: %r", exc)

    async def close(self) -> None:
        """Wait for a check in flight (it is short), so the pool closes cleanly."""
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(Exception):
                await task
