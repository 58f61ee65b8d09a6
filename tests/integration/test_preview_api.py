"""``GET /v1/schedules/preview`` and ``Client.preview``: the next fires of a schedule before
any job exists, in words, DST marked; invalid schedules refused as a submission would be."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from chronoq.client import Client
from chronoq.errors import ValidationError

from .helpers import assert_error, make_client

if TYPE_CHECKING:
    from .conftest import ServerHandle

PATH = "/v1/schedules/preview"


def test_a_preview_lists_fires_in_words_with_the_dst_gap_marked(server: ServerHandle) -> None:
    with make_client(server.url, "previewer") as api:
        r = api.get(PATH, params={"cron_schedule": "30 2 * * *", "timezone": "America/New_York",
                                  "count": 3, "after": "2026-03-07T00:00:00Z"})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["description"] == "At 02:30 every day (America/New_York)"
    assert body["timezone"] == "America/New_York"
    assert [f["at"] for f in body["fires"]] == [
        "2026-03-07T07:30:00.000Z", "2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z",
    ]  # fmt: skip
    assert [f["dst"] for f in body["fires"]] == [None, "gap", None]
    assert body["fires"][1]["local"] == "2026-03-08T03:00:00-04:00"


def test_the_preview_follows_the_jobs_dst_policy(server: ServerHandle) -> None:
    """With ``dst_gap=skip`` the spring-forward day has no 02:30 fire at all (the client,
    and the same answer from the CLI's local computation)."""
    after = datetime(2026, 3, 7, tzinfo=UTC)
    with Client(server.url, user_id="previewer") as client:
        body = client.preview("30 2 * * *", timezone="America/New_York", count=2, after=after,
                              dst_gap="skip")  # fmt: skip
    assert [f["at"] for f in body["fires"]] == [
        "2026-03-07T07:30:00.000Z", "2026-03-09T06:30:00.000Z",
    ]  # fmt: skip
    assert [f["dst"] for f in body["fires"]] == [None, "offset_change"]


def test_the_default_is_ten_fires_from_now(server: ServerHandle) -> None:
    with make_client(server.url, "previewer") as api:
        body = api.get(PATH, params={"cron_schedule": "@every 5s"}).json()
    fires = [datetime.fromisoformat(f["at"]) for f in body["fires"]]
    assert len(fires) == 10 and fires[0] > datetime.now(UTC).replace(microsecond=0)
    assert all((b - a).total_seconds() == 5 for a, b in itertools.pairwise(fires))


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({}, "cron_schedule", "required"),
        ({"cron_schedule": "0 0 30 2 *"}, "cron_schedule", "never occurs"),
        ({"cron_schedule": "61 * * * *"}, "cron_schedule", ""),
        ({"cron_schedule": "@daily", "timezone": "Mars/Olympus"}, "timezone", "unknown timezone"),
        ({"cron_schedule": "@daily", "count": "0"}, "count", "1 to 100"),
        ({"cron_schedule": "@daily", "count": "٥"}, "count", "1 to 100"),
        ({"cron_schedule": "@daily", "after": "2026-W01-1"}, "after", "RFC 3339"),
        ({"cron_schedule": "@daily\x00"}, "cron_schedule", "NUL"),
        ({"cron_schedule": "@daily", "dst_gap": "later"}, "dst_gap", "one of auto, shift, skip"),
        ({"cron_schedule": "@daily", "dst_repeat": "x"}, "dst_repeat", "auto, first, both"),
    ],
)
def test_a_bad_preview_is_a_400_naming_the_field(
    server: ServerHandle, params: dict[str, str], field: str, words: str
) -> None:
    with make_client(server.url, "previewer") as api:
        error = assert_error(api.get(PATH, params=params), 400, "validation_error", field)
    assert words in error["message"]


def test_the_client_previews_and_raises_on_a_bad_schedule(server: ServerHandle) -> None:
    with Client(server.url, user_id="previewer") as client:
        body = client.preview("0 0 12 29 2 *", count=2, after=datetime(2026, 1, 1, tzinfo=UTC))
        assert [f["at"][:4] for f in body["fires"]] == ["2028", "2032"]
        with pytest.raises(ValidationError):
            client.preview("0 0 30 2 *")
