"""The per-user limits' indexes, built where a limit is used (migration 013 says why).

Each count of ``postgres.limits`` reads a partial index when it exists; without it the
count is still exact (it reads the user's rows through ``jobs_user`` or the runs' heap),
only slower. So the store builds an index the first time a call asks for its limit, in
the background, and nothing waits for it:

* ``CREATE INDEX CONCURRENTLY``: writers go on while it is built (it cannot run in a
  transaction: a pooled connection of its own).
* One builder at a time in the whole cluster: a session advisory lock, tried (never
  waited for) around the check and the build; a process that does not get it tries
  again a few seconds later. Without it, a second process could find the first one's
  index still being built (INVALID) and drop it.
* An INVALID index left by a build that was interrupted (a process killed, the server
  restarted) is dropped and built again: IF NOT EXISTS alone would keep it, and an
  invalid index is maintained by every write yet never read.
* A failure is logged and forgotten: the next call that needs the index tries again.

Names and definitions are constants here, never taken from input.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

log = logging.getLogger(__name__)

ACTIVE_JOBS: Final = "jobs_user_active"
FIRES: Final = "runs_user_fired"
DEFINITIONS: Final = {
    ACTIVE_JOBS: "ON jobs (user_id) WHERE status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')",
    FIRES: "ON job_runs (user_id, triggered_at) WHERE attempt = 1",
}
BUILD_LOCK: Final = 0x6368726F6E7169  # "chronqi": one index build at a time in the cluster
VALIDITY: Final = (
    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relname = $1 AND n.nspname = current_schema()"
)


class LimitIndexes:
    """``need(name)`` before a count that reads that index; builds it once, off the path."""

    def __init__(self, pool: Callable[[], Any], *, retry: float = 5.0) -> None:
        """``retry``: seconds between tries while another process builds."""
        self._pool = pool
        self._retry = retry
        self._ready: set[str] = set()
        self.tries = 0
        """Build attempts so far, lock taken or not (for tests and logs)."""
        self._building: dict[str, asyncio.Task[None]] = {}

    def need(self, name: str) -> None:
        if name in self._ready or name in self._building:
            return
        task = asyncio.create_task(self._ensure(name), name=f"postgres-index-{name}")
        self._building[name] = task
        task.add_done_callback(lambda _: self._building.pop(name, None))

    async def settled(self) -> None:
        """Wait for the builds in flight (tests, and ``close``)."""
        while self._building:
            await asyncio.wait(set(self._building.values()))

    async def close(self) -> None:
        for task in list(self._building.values()):
            task.cancel()  # an interrupted build leaves an INVALID index: rebuilt next time
        await asyncio.gather(*self._building.values(), return_exceptions=True)

    async def _ensure(self, name: str) -> None:
        try:
            while True:
                if await self._try_build(name):
                    break
                await asyncio.sleep(self._retry)  # another process is building it
            self._ready.add(name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the count is exact without it; the next need tries again
            log.warning("postgres: could not build index %s (%s); counts read the heap", name, exc)

    async def _try_build(self, name: str) -> bool:
        """Build ``name`` unless it is valid; False if another process holds the build lock.
        The lock is only tried, never waited for: a session waiting for it would be one of
        the transactions CREATE INDEX CONCURRENTLY itself waits for (a deadlock)."""
        self.tries += 1
        async with self._pool().acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", BUILD_LOCK):
                return False
            try:
                valid = await conn.fetchval(VALIDITY, name)
                if valid is False:  # a build that was interrupted
                    await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                if valid is not True:
                    log.info("postgres: building index %s (a per-user limit is set)", name)
                    await conn.execute(f"CREATE INDEX CONCURRENTLY {name} {DEFINITIONS[name]}")
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", BUILD_LOCK)
        return True
