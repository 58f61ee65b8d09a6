"""Queue names, priorities and limits (``domain.queues``) and their settings."""

from __future__ import annotations

import pytest

from chronoq.domain.queues import (
    ClaimLimits,
    Slots,
    check_priority,
    check_queue,
    parse_queue_limits,
    parse_queue_list,
)
from chronoq.errors import ValidationError
from chronoq.runtime.config import Settings


@pytest.mark.parametrize("name", ["default", "a", "A-z_0.9", "x" * 64])
def test_good_queue_names(name: str) -> None:
    assert check_queue(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 65, "a b", "a\x00b", "é", "a/b", "a,b", "\udc80", "q" * 1_000_000, 7]
)
def test_bad_queue_names_name_the_field(name: object) -> None:
    with pytest.raises(ValidationError) as caught:
        check_queue(name, "jobs[2].queue")
    assert caught.value.field == "jobs[2].queue"
    assert len(str(caught.value)) < 300  # a huge value is not echoed whole


@pytest.mark.parametrize(("value", "wanted"), [(0, 0), (-1000, -1000), (1000, 1000), (3.0, 3)])
def test_good_priorities(value: float, wanted: int) -> None:
    assert check_priority(value) == wanted


@pytest.mark.parametrize("value", [1001, -1001, 1.5, float("nan"), float("inf"), True, "1", None])
def test_bad_priorities_name_the_field(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        check_priority(value)
    assert caught.value.field == "priority"


def test_queue_lists_and_limits_parse() -> None:
    assert parse_queue_list("") is None
    assert parse_queue_list(" a, b ,a") == frozenset({"a", "b"})
    assert parse_queue_limits("gpu=2, io=10") == {"gpu": 2, "io": 10}
    for bad in ("gpu", "gpu=", "gpu=x", "gpu=0", "gpu=-1", "gpu=1,gpu=2", "a b=1"):
        with pytest.raises(ValidationError) as caught:
            parse_queue_limits(bad)
        assert caught.value.field == "queue_limits"


def test_slots_count_queue_and_user_together() -> None:
    limits = ClaimLimits(per_queue={"gpu": 2}, per_user=2)
    slots = Slots(limits, [("gpu", "alice", 1), ("default", "bob", 2)])
    assert slots.full_users() == ["bob"] and slots.full_queues() == []
    assert not slots.admit("default", "bob")
    assert slots.admit("gpu", "carol")
    assert slots.queue_full("gpu") and slots.full_queues() == ["gpu"]
    assert not slots.admit("gpu", "dave")
    assert slots.admit("default", "alice")
    assert not slots.admit("default", "alice")  # alice: 1 in gpu + 1 here


def test_settings_carry_queues_and_limits() -> None:
    s = Settings.load(
        {"CHRONOQ_QUEUES": "a,b", "CHRONOQ_USER_MAX_CONCURRENT_RUNS": "3"},
        {"queue_limits": "a=1"},
    )
    assert s.worker_queues == frozenset({"a", "b"})
    assert s.claim_limits == ClaimLimits(per_queue={"a": 1}, per_user=3)
    assert Settings().worker_queues is None and not Settings().claim_limits.any


def test_a_broker_dispatch_takes_the_queue_options() -> None:
    s = Settings.load(
        {},
        {"store": "postgresql://x/y", "dispatch": "redis://127.0.0.1:1/0", "queues": "a",
         "queue_limits": "a=1", "user_max_concurrent_runs": 2},
    )  # fmt: skip
    assert s.worker_queues == frozenset({"a"})
    assert s.claim_limits == ClaimLimits(per_queue={"a": 1}, per_user=2)
