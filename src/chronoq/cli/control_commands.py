"""Job control commands of ``chronoq``: ``pause``, ``resume``, ``trigger``, ``edit``,
``fires``, ``delete``; and the schedule-policy options ``submit`` and ``edit`` share."""

from __future__ import annotations

from typing import Any

import click

from chronoq.cli.client_commands import _api, _client_options
from chronoq.cli.policy_options import policies_of, policy_options
from chronoq.cli.render import Json, clip, console, print_job, print_json, status_text, when
from chronoq.client import RESET
from chronoq.domain.policies import POLICY_NAMES


def _print_fires(found: list[Json]) -> None:
    from rich.table import Table

    out = console()
    if not found:
        out.print("No fires in this window.")
        return
    table = Table("SCHEDULED", "LAST", "FIRES", "OUTCOME", "REASON", "RUN", "TRIES", "MANUAL")
    for fire in found:
        span = fire.get("last_scheduled_for") != fire.get("scheduled_for")
        count = fire.get("count")
        table.add_row(
            when(fire.get("scheduled_for")),
            when(fire.get("last_scheduled_for")) if span else "",
            "many" if count is None else str(count),
            status_text(fire.get("outcome")),
            clip(fire.get("reason")),
            clip(str(fire.get("run_id") or "")[:8]),
            str(fire.get("attempts", "-")),
            "yes" if fire.get("manual") else "",
        )
    out.print(table)


def _job_command(verb: str, doc: str) -> click.Command:
    @click.command(name=verb, help=doc)
    @click.argument("job_id")
    @_client_options
    def command(job_id: str, url: str, user: str, as_json: bool) -> None:
        with _api(url, user) as client:
            job = client.pause(job_id) if verb == "pause" else client.trigger(job_id)
        if as_json:
            print_json(job)
        elif verb == "pause":
            print_job(console(), job, title="Paused" if job["status"] == "PAUSED" else None)
        else:
            click.echo(f"Triggered job {job_id}: run {job.get('run_id')} ({job.get('status')})")

    return command


pause = _job_command("pause", "Pause a job: no fires until resumed (a running run goes on).")
trigger = _job_command(
    "trigger", "Fire a recurring job now (a manual run; its overlap policy applies)."
)


@click.command()
@click.argument("job_id")
@click.option(
    "--catch-up", is_flag=True, help="Hand the fires missed while paused to the misfire policy."
)
@_client_options
def resume(job_id: str, catch_up: bool, url: str, user: str, as_json: bool) -> None:
    """Resume a paused job (missed fires are skipped unless --catch-up)."""
    with _api(url, user) as client:
        job = client.resume(job_id, catch_up=catch_up)
    if as_json:
        print_json(job)
        return
    print_job(console(), job, title="Resumed" if job["status"] != "PAUSED" else None)


_CLEARABLE = ("timezone", "timeout_seconds", *POLICY_NAMES, "queue", "priority")


@click.command()
@click.argument("job_id")
@click.option("--cron", help="New cron schedule (recurring jobs).")
@click.option("--timezone", metavar="TZ", help="New IANA timezone (recurring jobs).")
@click.option("--at", "at", metavar="RFC3339", help="New time of a one-shot job.")
@click.option("--payload", help="New payload.")
@click.option("--retries", type=click.IntRange(min=0), help="Retries after a failed run.")
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", help="Timeout."
)
@policy_options
@click.option(
    "--clear",
    multiple=True,
    type=click.Choice(_CLEARABLE),
    help="Reset a field to its default (repeatable), e.g. --clear end_at.",
)
@_client_options
def edit(job_id: str, url: str, user: str, as_json: bool, **options: Any) -> None:
    """Change a job from its next fire (a running run keeps what it has)."""
    changes: dict[str, Any] = {
        "cron_schedule": options["cron"],
        "timezone": options["timezone"],
        "next_fire_at": options["at"],
        "payload": options["payload"],
        "max_retries": options["retries"],
        "timeout_seconds": options["timeout"],
        **policies_of(options),
    }
    for name in options["clear"]:
        if changes.get(name) is not None:
            raise click.UsageError(f"--clear {name} and a new value for it: give one")
        changes[name] = RESET
    if all(value is None for value in changes.values()):
        raise click.UsageError("nothing to change: give at least one option")
    with _api(url, user) as client:
        job = client.update(job_id, **changes)
    if as_json:
        print_json(job)
        return
    print_job(console(), job, title="Changed")


@click.command()
@click.argument("job_id")
@click.option("--from", "start", metavar="RFC3339", help="Oldest fire (default: 24 h ago).")
@click.option("--to", "end", metavar="RFC3339", help="Newest fire (default: now).")
@click.option("--limit", "-n", type=click.IntRange(1, 1000), default=100, show_default=True)
@_client_options
def fires(
    job_id: str, start: str | None, end: str | None, limit: int, url: str, user: str, as_json: bool
) -> None:
    """A job's fire ledger: each nominal fire and its outcome (a run, or why skipped)."""
    with _api(url, user) as client:
        found = client.fires(job_id, start=start, end=end, limit=limit)
    if as_json:
        print_json(found)
        return
    _print_fires(found)


@click.command()
@click.argument("job_id")
@click.option(
    "--purge", is_flag=True, help="Delete the job with its runs, outputs, ledger and blobs."
)
@_client_options
def delete(job_id: str, purge: bool, url: str, user: str, as_json: bool) -> None:
    """Cancel a job, or with --purge delete it and everything it left."""
    with _api(url, user) as client:
        result = client.delete(job_id, purge=purge)
    if as_json:
        print_json(result)
    elif purge:
        click.echo(f"Purged job {job_id}")
    else:
        click.echo(f"Cancelled job {job_id} ({result.get('status')})")


CONTROL_COMMANDS: tuple[click.Command, ...] = (pause, resume, trigger, edit, fires, delete)
