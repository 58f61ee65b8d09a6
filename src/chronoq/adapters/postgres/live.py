"""``PostgresStore``'s live output of running runs: ``live_outputs`` (migration 011).

A mixin over the store's ``_connected`` pool: ``put_live_outputs`` (the Dispatch side,
compare-and-set, one statement for a worker's whole batch) and ``live_output`` (the
JobStore side, owner-checked). ``sql.COMPLETE`` and ``sql.END_LOST`` drop the window of
every run they move out of RUNNING.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chronoq.adapters.postgres import sql
from chronoq.adapters.postgres.errors import translated
from chronoq.adapters.postgres.rows import is_id
from chronoq.domain.live_output import LiveOutput, RunLive


class PostgresLive:
    """Mixed into ``PostgresStore`` (which provides ``_connected``)."""

    def _connected(self) -> Any:
        raise NotImplementedError

    async def put_live_outputs(self, worker_id: str, outputs: Sequence[LiveOutput]) -> list[bool]:
        newest = {o.run_id: o for o in outputs if is_id(o.run_id)}  # one row per run: the last
        if not newest:
            return [False] * len(outputs)
        batch = list(newest.values())
        with translated("put_live_outputs"):
            rows = await self._connected().fetch(
                sql.PUT_LIVE,
                [o.run_id for o in batch],
                [o.attempt for o in batch],
                [o.start for o in batch],
                [o.text for o in batch],
                worker_id,
                [o.end for o in batch],
            )
        kept = {str(r[0]) for r in rows}
        return [o.run_id in kept and newest.get(o.run_id) is o for o in outputs]

    async def live_output(self, user_id: str, run_id: str, *, after: int = -1) -> RunLive | None:
        if not is_id(run_id):
            return None
        with translated("live_output"):
            row = await self._connected().fetchrow(sql.READ_LIVE, run_id, user_id, after)
        if row is None:
            return None
        job_id, *rest = row
        return RunLive.of(run_id, str(job_id), *rest)
