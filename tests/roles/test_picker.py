"""The picker role in-process (MemoryStore + FakeClock): when it claims, how it sleeps,
what wakes it, its rate cap, and fencing by (owner, epoch)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from chronoq.ports.dispatch import ClaimDueParams
from chronoq.ports.notify import ASSIGN, FIRES

try:
    from chronoq.services.picker import IDLE_RECHECK
    from chronoq.testing.roles import USER, Stack
except ImportError as exc:  # pragma: no cover - only while the memory adapters are written
    pytest.skip(f"chronoq.testing.roles is not importable yet: {exc}", allow_module_level=True)


async def unclaimed(stack: Stack) -> int:
    """Fires due now that no picker has claimed yet."""
    return (await stack.store.backlog(stack.clock.now())).due


async def triggered(stack: Stack, job_id: str) -> list[datetime]:
    return [run.triggered_at for run in await stack.store.list_runs(USER, job_id)]


@pytest.mark.parametrize("lookahead", [0.0, 0.5])
async def test_a_fire_is_claimed_exactly_lookahead_before_it_is_due_never_earlier(
    stack: Stack, lookahead: float
) -> None:
    job = stack.job(due_in=7.25)
    await stack.store.insert_jobs([job])
    assert job.next_fire_at is not None
    await stack.picker(distributed=False, lookahead=lookahead)
    await stack.clock.advance(7.25 - lookahead - 0.001)
    assert await triggered(stack, job.job_id) == [], "claimed early"
    await stack.clock.advance(0.001)
    assert await triggered(stack, job.job_id) == [job.next_fire_at - timedelta(seconds=lookahead)]
    (run,) = await stack.store.list_runs(USER, job.job_id)
    assert run.available_at == run.scheduled_for == job.next_fire_at, "workers start it on time"


async def test_the_picker_sleeps_until_the_next_fire_instead_of_polling(stack: Stack) -> None:
    job = stack.job(due_in=3.0)
    await stack.store.insert_jobs([job])
    picker = await stack.picker(distributed=False, lookahead=0.0)
    claims = stack.link(picker, "store").calls
    assert claims["claim_due"] == 1, "one look at start"
    await stack.clock.advance(2.99)
    assert claims["claim_due"] == 1, "no look before the fire is due"
    await stack.clock.advance(0.01)
    assert claims["claim_due"] == 2
    assert len(await triggered(stack, job.job_id)) == 1
    await stack.clock.advance(4 * IDLE_RECHECK)
    assert claims["claim_due"] <= 2 + 4, "nothing due: one look per idle recheck at most"


async def test_a_fires_hint_wakes_the_picker_at_once(stack: Stack) -> None:
    await stack.picker(distributed=False, lookahead=0.0)
    await stack.clock.advance(1.0)  # idle: asleep until the recheck
    job = stack.job(due_in=0.0)
    await stack.store.insert_jobs([job])
    stack.notifier.publish(FIRES)
    await stack.clock.advance(0.0)
    assert await triggered(stack, job.job_id) == [stack.clock.now()]


async def test_the_rate_cap_spreads_a_backlog_over_time(stack: Stack) -> None:
    await stack.store.insert_jobs([stack.job(due_in=-60.0) for _ in range(45)])
    await stack.picker(distributed=False, dispatch_rate=10.0)
    claimed_at: list[tuple[float, int]] = []
    for step in range(40):
        claimed_at.append((step * 0.1, 45 - await unclaimed(stack)))
        await stack.clock.advance(0.1)
    assert claimed_at[0] == (0.0, 10), "a burst of one second's worth"
    for elapsed, claimed in claimed_at:
        assert claimed <= 10 + 10 * elapsed + 1e-6, (elapsed, claimed)
    assert claimed_at[10][1] >= 19, "and then the rate itself"
    assert await unclaimed(stack) == 0, "the backlog drains (45 fires at 10/s from a burst of 10)"


async def test_a_fenced_out_picker_claims_nothing_and_resumes_after_a_new_assignment(
    stack: Stack,
) -> None:
    everything = range(stack.shard_count)
    coordination, store = stack.coordination, stack.store
    lease = await coordination.try_lead("boss", 3600)
    assert lease is not None

    async def assign(owner: str, *, fence: bool = True) -> int:
        owners = dict.fromkeys(everything, owner)
        epoch = await coordination.assign_shards("boss", lease.epoch, owners)
        assert epoch is not None
        if fence:
            assert await store.fence_shards(epoch, owners)
            stack.notifier.publish(ASSIGN, str(epoch))
        return epoch

    await assign("p1")
    picker = await stack.picker("p1")
    await store.insert_jobs([stack.job()])
    stack.notifier.publish(FIRES)
    await stack.clock.advance(0.0)
    assert await unclaimed(stack) == 0, "p1 owns every shard: it claims"

    await assign("p2")  # every shard moves away (p2 is not even running)
    await store.insert_jobs([stack.job()])
    stack.notifier.publish(FIRES)
    await stack.clock.advance(5.0)
    assert await unclaimed(stack) == 1, "fenced out: p1 claims nothing"

    # The coordination gives the shards back to p1, but the store's fence still says p2:
    # p1's claims under the new epoch find nothing (the store checks), and it does not spin.
    claims = stack.link(picker, "store").calls
    before = claims["claim_due"]
    epoch = await assign("p1", fence=False)
    await stack.clock.advance(3.0)
    assert await unclaimed(stack) == 1, "not fenced yet: still nothing"
    assert claims["claim_due"] - before <= 10, "a picker refused by the fence backs off"

    assert await store.fence_shards(epoch, dict.fromkeys(everything, "p1"))
    stack.notifier.publish(ASSIGN, str(epoch))
    await stack.clock.advance(0.0)
    assert await unclaimed(stack) == 0, "fenced again: p1 resumes at once"


async def test_a_claim_under_a_stale_epoch_is_refused_by_the_store(stack: Stack) -> None:
    """The picker's safety rests on this store check; pinned here next to its use."""
    owners = dict.fromkeys(range(stack.shard_count), "p1")
    assert await stack.store.fence_shards(2, owners)
    await stack.store.insert_jobs([stack.job()])
    now = stack.clock.now()
    stale = ClaimDueParams(shards=None, now=now, horizon=now, owner="p1", epoch=1)
    assert await stack.store.claim_due(stale) == []
    current = ClaimDueParams(shards=None, now=now, horizon=now, owner="p1", epoch=2)
    assert len(await stack.store.claim_due(current)) == 1
