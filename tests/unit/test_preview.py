"""Schedule preview (``domain.preview``): the next fires, in words, DST transitions marked,
checked on DST days in three zones (two hemispheres) against an independent UTC oracle
that scans the zone's offsets minute by minute."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from chronoq.cli.main import main
from chronoq.domain.preview import GAP, OFFSET_CHANGE, REPEATED, preview
from chronoq.errors import ScheduleError, ValidationError

# (zone, spring-forward day, fall-back day) in 2026
ZONES = [
    ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
    ("Europe/Berlin", date(2026, 3, 29), date(2026, 10, 25)),
    ("Australia/Sydney", date(2026, 10, 4), date(2026, 4, 5)),
]


def oracle(zone: ZoneInfo, day: date, wall: time) -> datetime:
    """When a fixed-time daily fire at ``wall`` happens on ``day`` (DESIGN §5.9), by brute
    force: every UTC minute of the surrounding two days, read on the zone's wall clock."""
    start = datetime.combine(day - timedelta(days=1), time(), tzinfo=UTC)
    minutes = [start + timedelta(minutes=m) for m in range(3 * 24 * 60)]
    target = datetime.combine(day, wall)
    exact = [t for t in minutes if t.astimezone(zone).replace(tzinfo=None) == target]
    if exact:
        return exact[0]  # existing, or the first of two occurrences
    # a gap: the first instant whose wall clock is past the asked-for time that day
    return next(t for t in minutes if t.astimezone(zone).replace(tzinfo=None) > target)


@pytest.mark.parametrize(("zone", "spring", "fall"), ZONES)
@pytest.mark.parametrize("wall", [time(2, 30), time(1, 30), time(3, 0), time(12, 0)])
def test_fixed_time_fires_match_the_oracle_across_both_transitions(
    zone: str, spring: date, fall: date, wall: time
) -> None:
    tz = ZoneInfo(zone)
    expression = f"0 {wall.minute} {wall.hour} * * *"
    for day in (spring, fall):
        after = datetime.combine(day - timedelta(days=2), time(), tzinfo=UTC)
        fires = preview(expression, zone, after, 5).fires
        expected = [oracle(tz, day + timedelta(days=d), wall) for d in range(-3, 6)]
        expected = [e for e in expected if e > after][: len(fires)]
        assert [f.at for f in fires] == expected, (zone, day, wall)


@pytest.mark.parametrize(("zone", "spring", "fall"), ZONES)
def test_dst_marks_say_what_happened(zone: str, spring: date, fall: date) -> None:
    tz = ZoneInfo(zone)
    gap_hour = _gap_hour(tz, spring)
    after = datetime.combine(spring - timedelta(days=1), time(), tzinfo=UTC)
    fires = preview(f"0 30 {gap_hour} * * *", zone, after, 4).fires
    by_day = {f.local.date(): f.dst for f in fires}
    assert by_day[spring] == GAP
    assert fires[-1].dst is None  # two days on, an ordinary day again
    day_after = spring + timedelta(days=1)
    assert by_day[day_after] in (OFFSET_CHANGE, None)

    repeated_hour = _repeated_hour(tz, fall)
    after = datetime.combine(fall - timedelta(days=1), time(), tzinfo=UTC)
    fires = preview(f"0 30 {repeated_hour} * * *", zone, after, 4).fires
    marks = {f.local.date(): f.dst for f in fires}
    assert marks[fall] == REPEATED
    assert marks[fall + timedelta(days=1)] == OFFSET_CHANGE


def _gap_hour(tz: ZoneInfo, day: date) -> int:
    """An hour whose :30 does not exist on ``day``."""
    for hour in range(24):
        wall = datetime.combine(day, time(hour, 30))
        if wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
            return hour
    raise AssertionError(f"no gap on {day} in {tz}")


def _repeated_hour(tz: ZoneInfo, day: date) -> int:
    """An hour whose :30 occurs twice on ``day``."""
    for hour in range(24):
        wall = datetime.combine(day, time(hour, 30), tzinfo=tz)
        if wall.utcoffset() != wall.replace(fold=1).utcoffset():
            return hour
    raise AssertionError(f"no repeated hour on {day} in {tz}")


def test_interval_like_schedules_fire_in_both_passes_of_a_repeated_hour() -> None:
    after = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # 00:30 EDT
    fires = preview("0 * * * *", "America/New_York", after, 3).fires
    assert [f.at.hour for f in fires] == [5, 6, 7]  # 01:00 EDT, 01:00 EST, 02:00 EST
    assert [f.dst for f in fires] == [REPEATED, REPEATED, None]


def test_the_schedule_in_words() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    assert preview("*/2 * * * * *", None, after, 1).description == (
        "Every second second of every minute (UTC)"
    )
    assert preview("0 9 * * MON-FRI", "Europe/Berlin", after, 1).description == (
        "At 09:00 on Monday through Friday (Europe/Berlin)"
    )
    assert preview("@every 1h30m", None, after, 1).description == (
        "Every 1h30m, counted from the previous fire"
    )
    leap = preview("0 0 12 29 2 *", None, after, 2)
    assert [f.at.year for f in leap.fires] == [2028, 2032]


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4 *"])
def test_a_schedule_that_never_fires_is_refused_with_why(expression: str) -> None:
    with pytest.raises(ScheduleError, match="never occurs in the chosen months"):
        preview(expression, None, datetime(2026, 1, 1, tzinfo=UTC), 3)


@pytest.mark.parametrize("count", [0, 101])
def test_count_is_bounded(count: int) -> None:
    with pytest.raises(ValidationError, match="count must be from 1 to 100"):
        preview("@daily", None, datetime(2026, 1, 1, tzinfo=UTC), count)


def test_the_cli_prints_words_fires_and_dst_notes() -> None:
    result = CliRunner().invoke(
        main, ["preview", "30 2 * * *", "-z", "America/New_York", "--after",
               "2026-03-07T00:00:00Z", "-n", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "At 02:30 every day (America/New_York)"
    assert lines[2].startswith("  2026-03-08 07:00:00Z  2026-03-08 03:00:00 EDT  <- the wall")
    refused = CliRunner().invoke(main, ["preview", "0 0 30 2 *"])
    assert refused.exit_code == 1 and "never occurs" in refused.output
