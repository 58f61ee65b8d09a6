"""Failpoint specs: parsed strictly, armed per point, counted per hit."""

from __future__ import annotations

import pytest

from chronoq import failpoints
from chronoq.errors import ConfigError
from chronoq.runtime.config import Settings


def test_parse_accepts_points_with_optional_hit_count() -> None:
    assert failpoints.parse("after_claim=kill, after_result=kill@3") == {
        "after_claim": 1,
        "after_result": 3,
    }
    assert failpoints.parse("") == {}


@pytest.mark.parametrize(
    "spec", ["bogus=kill", "after_claim=explode", "after_claim=kill@x", "after_claim"]
)
def test_parse_refuses_malformed_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="bad failpoint"):
        failpoints.parse(spec)


def test_settings_refuse_a_bad_spec_with_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bad failpoint"):
        Settings.load({"CHRONOQ_FAILPOINTS": "nowhere=kill"})


def test_unarmed_points_do_nothing() -> None:
    failpoints.configure("")
    for point in failpoints.POINTS:
        failpoints.hit(point)  # would SIGKILL the test process if armed
    failpoints.configure("after_result=kill@1000")
    failpoints.hit("after_claim")  # armed elsewhere: nothing
    for _ in range(10):
        failpoints.hit("after_result")  # 10 of 1000 hits: not yet
    failpoints.configure("")
