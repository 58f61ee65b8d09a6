"""Retry policy (DESIGN §5.7): exponential ceiling, full jitter, and who gets another attempt."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronoq.domain.retry import RetryPolicy, attempts_left
from chronoq.domain.states import LostRun, lost_run

attempts = st.integers(min_value=1, max_value=10_000)
seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_defaults() -> None:
    policy = RetryPolicy()
    assert policy.base_seconds == 0.5
    assert policy.cap_seconds == 60.0


def test_ceiling_doubles_from_base_then_caps() -> None:
    policy = RetryPolicy(base_seconds=0.5, cap_seconds=60)
    assert [policy.ceiling(a) for a in range(1, 10)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0,
    ]  # fmt: skip


def test_ceiling_of_huge_attempts_stays_at_the_cap() -> None:
    policy = RetryPolicy(base_seconds=1, cap_seconds=3600)
    assert policy.ceiling(64) == 3600
    assert policy.ceiling(10**9) == 3600  # the exponent is clamped: no OverflowError


def test_zero_base_means_immediate_retries() -> None:
    policy = RetryPolicy(base_seconds=0, cap_seconds=60)
    assert policy.ceiling(5) == 0
    assert policy.delay(5) == 0


@given(base=seconds, cap=seconds, attempt=attempts)
def test_ceiling_is_monotonic_and_bounded(base: float, cap: float, attempt: int) -> None:
    policy = RetryPolicy(base_seconds=base, cap_seconds=cap)
    assert 0 <= policy.ceiling(attempt) <= cap
    assert policy.ceiling(attempt) <= policy.ceiling(attempt + 1)
    assert policy.ceiling(1) == min(base, cap)


@given(base=seconds, cap=seconds, attempt=attempts, seed=st.integers())
def test_delay_lies_within_zero_and_the_ceiling(
    base: float, cap: float, attempt: int, seed: int
) -> None:
    policy = RetryPolicy(base_seconds=base, cap_seconds=cap)
    delay = policy.delay(attempt, random.Random(seed))
    assert 0 <= delay <= policy.ceiling(attempt)


def test_full_jitter_spreads() -> None:
    """Jobs that failed together must not retry together: delays differ and fill the range."""
    policy = RetryPolicy(base_seconds=1, cap_seconds=60)
    rng = random.Random(1234)
    delays = [policy.delay(6, rng) for _ in range(1000)]  # ceiling 32 s
    assert len(set(delays)) == len(delays)
    assert min(delays) < 32 * 0.05
    assert max(delays) > 32 * 0.95
    assert 32 * 0.4 < sum(delays) / len(delays) < 32 * 0.6  # uniform: mean ~ ceiling / 2


def test_seeded_random_is_reproducible() -> None:
    policy = RetryPolicy()
    first = [policy.delay(4, random.Random(7)) for _ in range(3)]
    assert len(set(first)) == 1
    rng = random.Random(7)
    assert policy.delay(4, rng) == first[0]
    assert policy.delay(4, rng) != first[0]


def test_delay_without_rng_uses_a_module_random() -> None:
    policy = RetryPolicy(base_seconds=10, cap_seconds=10)
    delays = {policy.delay(1) for _ in range(50)}
    assert len(delays) > 1
    assert all(0 <= d <= 10 for d in delays)


@pytest.mark.parametrize(
    "kwargs", [{"base_seconds": -0.1}, {"cap_seconds": -1}, {"base_seconds": -1, "cap_seconds": -1}]
)
def test_negative_base_or_cap_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_seconds": float("inf")},
        {"cap_seconds": float("inf")},
        {"base_seconds": float("nan")},
        {"cap_seconds": float("nan")},
    ],
)
def test_non_finite_base_or_cap_is_refused(kwargs: dict[str, float]) -> None:
    """An infinite cap let late retries overflow ``finished + timedelta(delay)``."""
    with pytest.raises(ValueError, match="finite"):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_one_based(attempt: int) -> None:
    policy = RetryPolicy()
    with pytest.raises(ValueError, match="1-based"):
        policy.ceiling(attempt)
    with pytest.raises(ValueError, match="1-based"):
        policy.delay(attempt)


def test_policy_is_frozen_and_keyword_only() -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.base_seconds = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(1.0, 2.0)  # type: ignore[misc]


# -- who gets another attempt -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "max_retries", "expected"),
    [
        (1, 0, False),
        (1, 1, True),
        (2, 1, False),
        (1, 3, True),
        (3, 3, True),
        (4, 3, False),
        (5, 3, False),
    ],
)
def test_attempts_left(attempt: int, max_retries: int, expected: bool) -> None:
    assert attempts_left(attempt, max_retries) is expected


@given(max_retries=st.integers(min_value=0, max_value=200))
def test_a_job_gets_exactly_max_retries_plus_one_attempts(max_retries: int) -> None:
    tries = 1
    while attempts_left(tries, max_retries):
        tries += 1
    assert tries == max_retries + 1


@given(
    attempt=attempts,
    max_retries=st.integers(min_value=0, max_value=200),
    interruptions=st.integers(min_value=0, max_value=50),
)
def test_interrupted_attempts_do_not_count_against_max_retries(
    attempt: int, max_retries: int, interruptions: int
) -> None:
    """``max_retries`` counts failures of the job itself: the same number of job failures
    leaves the same retries, however many attempts were lost to Chronoq's crashes."""
    interruptions = min(interruptions, attempt - 1)
    failures = attempt - interruptions
    assert attempts_left(attempt, max_retries, interruptions) is attempts_left(
        failures, max_retries
    )
    assert attempts_left(attempt, max_retries, interruptions) is (failures <= max_retries)


def test_max_retries_zero_with_two_interruptions_still_has_no_retry() -> None:
    assert attempts_left(3, 0, interruptions=2) is False
    assert attempts_left(3, 1, interruptions=2) is True


@given(
    started=st.booleans(),
    interruptions=st.integers(min_value=0, max_value=20),
    budget=st.integers(min_value=0, max_value=20),
    cancelled=st.booleans(),
)
def test_the_lost_run_rule(started: bool, interruptions: int, budget: int, cancelled: bool) -> None:
    decision = lost_run(
        started=started, interruptions=interruptions, max_interruptions=budget, cancelled=cancelled
    )
    if cancelled:
        assert decision is LostRun.CANCEL
    elif not started:
        assert decision is LostRun.REQUEUE  # never executed: no attempt used, any budget
    elif interruptions < budget:
        assert decision is LostRun.INTERRUPT
    else:
        assert decision is LostRun.DEAD
