"""Store contract: ``backlog`` — what ``chronoq cluster status`` shows as dispatch lag."""

from __future__ import annotations

from chronoq.ports.store import Store

from .helpers import T0, at, claim_due, claim_runs, make_job


async def test_backlog_counts_unclaimed_due_fires_waiting_and_running_runs(store: Store) -> None:
    empty = await store.backlog(T0)
    assert (empty.due, empty.oldest_due, empty.queued, empty.running) == (0, None, 0, 0)

    late, due, future = (make_job(next_fire_at=t) for t in (at(-5), T0, at(60)))
    await store.insert_jobs([late, due, future])
    before = await store.backlog(T0)
    assert (before.due, before.oldest_due) == (2, at(-5))
    assert (before.queued, before.running) == (0, 0)

    assert len(await claim_due(store, T0)) == 2
    claimed = await store.backlog(T0)
    assert (claimed.due, claimed.oldest_due, claimed.queued, claimed.running) == (0, None, 2, 0)

    assert len(await claim_runs(store, "w1", T0, limit=1)) == 1
    leased = await store.backlog(T0)
    assert (leased.queued, leased.running) == (1, 1)
    assert (await store.backlog(at(61))).due == 1  # the future job, once it is due
