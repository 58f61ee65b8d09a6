"""``chronoq preview``: the next fires of a schedule, in words, DST marked. Computed here with
the scheduler's own code (``domain.preview``), so it needs no server; ``--json`` prints what
``GET /v1/schedules/preview`` answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from chronoq.domain.clock import parse_rfc3339
from chronoq.domain.preview import GAP, MAX_PREVIEW, OFFSET_CHANGE, REPEATED, preview
from chronoq.domain.schedules import DstGap, DstRepeat
from chronoq.errors import ValidationError
from chronoq.services.api.routes_schedules import preview_json

_NOTES = {
    GAP: "the wall time does not exist that day (spring forward): fires at the transition",
    REPEATED: "the wall time occurs twice that day (fall back)",
    OFFSET_CHANGE: "UTC offset changed since the previous fire",
}


@click.command(name="preview")
@click.argument("cron_schedule")
@click.option("--timezone", "-z", metavar="TZ", help="IANA timezone the fields are read in.")
@click.option("--count", "-n", type=click.IntRange(1, MAX_PREVIEW), default=10, show_default=True)
@click.option("--after", metavar="RFC3339", help="Start after this instant (default: now).")
@click.option(
    "--dst-gap",
    type=click.Choice([v.value for v in DstGap]),
    default="auto",
    show_default=True,
    help="Wall times DST skips: shift to the transition, or skip.",
)
@click.option(
    "--dst-repeat",
    type=click.Choice([v.value for v in DstRepeat]),
    default="auto",
    show_default=True,
    help="Wall times DST repeats: fire at the first, or at both.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's answer).")
def preview_command(
    cron_schedule: str, timezone: str | None, count: int, after: str | None, dst_gap: str,
    dst_repeat: str, as_json: bool,
) -> None:  # fmt: skip
    """Show the next fires of CRON_SCHEDULE (cron, @every, @daily...), DST transitions marked."""
    try:
        start = parse_rfc3339(after) if after else datetime.now(UTC)
    except ValueError:
        raise click.BadParameter(
            f"{after!r} is not an RFC 3339 timestamp", param_hint="--after"
        ) from None
    try:
        result = preview(
            cron_schedule, timezone, start, count,
            dst_gap=DstGap(dst_gap), dst_repeat=DstRepeat(dst_repeat),
        )  # fmt: skip
    except ValidationError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps(preview_json(result), indent=2))
        return
    click.echo(result.description)
    for fire in result.fires:
        note = f"  <- {_NOTES[fire.dst]}" if fire.dst else ""
        local = fire.local.strftime("%Y-%m-%d %H:%M:%S %Z")
        click.echo(f"  {fire.at:%Y-%m-%d %H:%M:%S}Z  {local}{note}")
    if len(result.fires) < count:
        click.echo("  (no later fires)")
