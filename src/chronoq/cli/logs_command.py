"""``chronoq logs [--follow] RUN``: a run's output, live (``Client.follow_output``)."""

from __future__ import annotations

import sys

import click

from chronoq.cli.client_commands import _api, _client_options
from chronoq.cli.render import print_json
from chronoq.client_live import CAUGHT_UP


@click.command()
@click.argument("run_id")
@click.option(
    "--follow", "-f", is_flag=True,
    help="Keep printing as the run prints, until it ends; exit 1 unless it COMPLETED.",
)  # fmt: skip
@_client_options
def logs(run_id: str, follow: bool, url: str, user: str, as_json: bool) -> None:
    """Print a run's output: all of it once it has ended; while it runs, what it printed
    so far (the newest 256 KiB) — and with --follow, the rest as it comes."""
    end = None
    with _api(url, user) as client:
        for event in client.follow_output(run_id):
            if event is CAUGHT_UP:
                if not follow:
                    break
                continue
            if event["event"] == "end":
                end = event
                break
            if as_json:
                print_json(event)
            elif event["event"] == "output":
                sys.stdout.write(event["text"])
                sys.stdout.flush()
    if end is not None and as_json:
        print_json(end)
    if follow and end is not None and end.get("status") != "COMPLETED":
        raise click.ClickException(
            f"run {run_id} ended {end.get('status')}: {end.get('error_message') or ''}".rstrip(": ")
        )
