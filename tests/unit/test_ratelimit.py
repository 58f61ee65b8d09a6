"""The picker's dispatch cap: a token bucket over an injected monotonic time."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronoq.domain.ratelimit import TokenBucket


def test_starts_full_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=100, burst=50)
    assert bucket.available(0.0) == 50
    bucket.take(50)
    assert bucket.available(0.0) == 0
    assert bucket.wait_for_one() == pytest.approx(0.01)
    assert bucket.available(0.1) == 10
    assert bucket.available(10.0) == 50  # never above the burst


def test_infinite_rate_never_limits() -> None:
    bucket = TokenBucket(rate=math.inf, burst=1)
    bucket.take(10**6)
    assert bucket.available(0.0) >= 10**6
    assert bucket.wait_for_one() == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_refuses_nonsense(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=rate, burst=burst)


@given(
    rate=st.floats(1, 10_000),
    steps=st.lists(st.floats(0, 2), min_size=1, max_size=50),
)
def test_what_is_taken_never_exceeds_burst_plus_rate_times_elapsed(
    rate: float, steps: list[float]
) -> None:
    bucket = TokenBucket(rate=rate, burst=min(rate, 1000) + 1)
    now, taken = 0.0, 0
    for step in steps:
        now += step
        got = bucket.available(now)
        bucket.take(got)
        taken += got
    assert taken <= bucket.burst + rate * now + 1e-6
