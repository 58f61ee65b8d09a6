"""Per-user limits, the pure parts (``domain.limits``) and their HTTP edges: the 429 the
api renders and the error the client raises for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest

from chronoq.client import _error_from
from chronoq.domain.claims import ClaimPlan, PlannedRun
from chronoq.domain.limits import (
    ACTIVE_RETRY_AFTER,
    TOO_MANY_ACTIVE_JOBS,
    TOO_MANY_FIRES,
    Deferrals,
    FireBudget,
    UserLimits,
    check_active,
    check_trigger,
    fires_retry_after,
)
from chronoq.errors import LimitExceededError
from chronoq.services.api.http import error_response

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_limits_are_ints_from_zero(bad: object) -> None:
    with pytest.raises(ValueError, match="max_active_jobs"):
        UserLimits(max_active_jobs=bad)  # type: ignore[arg-type]
    assert UserLimits() == UserLimits(max_active_jobs=0, max_fires_per_minute=0)


def test_active_limit_boundary_names_the_user_and_counts() -> None:
    check_active({"alice": 2}, {"alice": 1}, 3)  # exactly at the limit
    check_active({"alice": 0}, {"alice": 9}, 3)  # nothing new: never refused
    with pytest.raises(LimitExceededError) as refused:
        check_active({"bob": 1, "alice": 3}, {"alice": 1}, 3)
    assert refused.value.code == TOO_MANY_ACTIVE_JOBS
    assert refused.value.retry_after == ACTIVE_RETRY_AFTER
    assert "'alice'" in str(refused.value) and "they have 1" in str(refused.value)


def test_trigger_retry_after_is_when_the_oldest_fire_leaves_the_window() -> None:
    check_trigger(1, _s(0), 2, _s(10))
    with pytest.raises(LimitExceededError) as refused:
        check_trigger(2, _s(0), 2, _s(10.2))
    assert refused.value.code == TOO_MANY_FIRES
    assert refused.value.retry_after == 50  # ceil(49.8)
    assert fires_retry_after(None, _s(0)) == 1
    assert fires_retry_after(_s(-70), _s(0)) == 1  # never below one second


def _plan(runs: int, next_fire: datetime | None) -> ClaimPlan:
    fire = PlannedRun(scheduled_for=T0, available_at=T0)
    return ClaimPlan(runs=[fire] * runs, next_fire_at=next_fire)


def test_a_budget_admits_until_spent_and_remembers_who_waited() -> None:
    budget = FireBudget(2)
    budget.count(budget.uncounted(["a", "b", "a"]), {"b": 2})
    assert budget.blocked == {"b"} and not budget.admit("b")
    assert budget.admit("a")
    budget.spend("a", _plan(1, _s(60)), _s(1))
    assert budget.admit("a")
    budget.spend("a", _plan(1, _s(0)), _s(1))  # still behind: its next fire is due
    assert not budget.admit("a")
    assert (budget.deferred, budget.behind, budget.deferred_jobs) == ({"a", "b"}, {"a"}, 2)
    assert budget.uncounted(["a", "c"]) == ["c"]


def test_deferral_time_is_not_lateness() -> None:
    deferrals = Deferrals()
    assert deferrals.claim_instant("a", _s(0), _s(100)) == _s(100)  # not held back: as is
    budget = FireBudget(1)
    budget.count(["a"], {"a": 1})
    budget.admit("a")
    deferrals.update(budget, _s(30))
    assert deferrals.claim_instant("a", _s(40), _s(100)) == _s(40)  # due while held: on time
    assert deferrals.claim_instant("a", _s(10), _s(100)) == _s(30)  # late 20 s before that
    served = FireBudget(1)
    served.count(["a"], {})
    served.admit("a")
    served.spend("a", _plan(1, _s(200)), _s(100))
    deferrals.update(served, _s(100))  # caught up: no longer held back
    assert deferrals.claim_instant("a", _s(40), _s(100)) == _s(100)


def test_the_api_answers_429_with_retry_after_and_the_limits_code() -> None:
    exc = LimitExceededError("over", code=TOO_MANY_FIRES, retry_after=0)
    response = error_response(exc)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    body = msgspec.json.decode(response.body)
    assert body == {"error": {"code": TOO_MANY_FIRES, "message": "over", "field": None}}


def test_the_client_raises_limit_exceeded_with_code_and_retry_after() -> None:
    body = {"error": {"code": TOO_MANY_ACTIVE_JOBS, "message": "at most 3", "field": None}}
    response = httpx.Response(429, json=body, headers={"Retry-After": "30"})
    error = _error_from(response)
    assert isinstance(error, LimitExceededError)
    assert (error.code, error.retry_after, str(error)) == (TOO_MANY_ACTIVE_JOBS, 30, "at most 3")


def test_users_still_out_of_budget_are_held_out_up_front() -> None:
    deferrals = Deferrals(since={"a": _s(0), "b": _s(5)})
    assert deferrals.held() == ["b", "a"]  # most recent first
    budget = FireBudget(3)
    assert budget.hold_out(deferrals.held(), {"a": 3, "b": 2}) == ["a"]
    assert budget.blocked == {"a"} and budget.uncounted(["a", "b"]) == ["b"]
    assert budget.waiting and not budget.deferred  # left out, not seen: no deferral counted
