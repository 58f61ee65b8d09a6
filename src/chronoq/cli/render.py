"""How the CLI prints: JSON as the server sent it, or tables (rich is imported only when
a table is printed, so ``--json`` and the server commands never load it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

Json = dict[str, Any]


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def console() -> Console:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: don't squeeze ids into 80 columns
        console = Console(highlight=False, width=160)
    return console


_STATUS_STYLES = {
    "PENDING": "yellow",
    "QUEUED": "yellow",
    "RETRY_SCHEDULED": "yellow",
    "RUNNING": "cyan",
    "COMPLETED": "green",
    "FAILED": "red",
    "TIMED_OUT": "red",
    "DEAD": "bold red",
    "PAUSED": "magenta",
    "CANCELLED": "dim",
    "SKIPPED": "dim",
}


def status_text(value: object) -> Text:
    from rich.text import Text

    text = str(value or "-")
    return Text(text, style=_STATUS_STYLES.get(text, ""))


def when(value: object) -> str:
    """``2030-01-02T03:04:05.123456Z`` -> ``2030-01-02 03:04:05`` (UTC)."""
    if not value:
        return "-"
    text = str(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.utcoffset() is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def clip(value: object, width: int | None = None) -> Text:
    """Literal text (never rich markup) on one line, cut to ``width``; ``-`` for nothing."""
    from rich.text import Text

    if value is None or value == "":
        return Text("-")
    text = " ".join(str(value).split())
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return Text(text)


def print_jobs(console: Console, found: list[Json]) -> None:
    from rich.table import Table

    if not found:
        console.print("No jobs.")
        return
    table = Table(
        "JOB ID", "PROJECT", "STATUS", "PAYLOAD", "SCHEDULE", "NEXT FIRE", "LAST RUN", "CREATED"
    )
    table.columns[0].no_wrap = True
    for item in found:
        table.add_row(
            clip(item.get("job_id")),
            clip(item.get("project_id"), 24),
            status_text(item.get("status")),
            clip(item.get("payload"), 32),
            clip(item.get("cron_schedule"), 24),
            when(item.get("next_fire_at")),
            _last_run(item.get("last_run")),
            when(item.get("created_at")),
        )
    console.print(table)


def _last_run(value: object) -> Text:
    """The newest run's status and when it ended (or was due), from a list item."""
    from rich.text import Text

    if not isinstance(value, dict):
        return Text("-")
    text = status_text(value.get("status"))
    text.append(" " + when(value.get("completed_at") or value.get("scheduled_for")))
    return text


_JOB_FIELDS = (
    ("Job", "job_id"),
    ("Project", "project_id"),
    ("Status", "status"),
    ("Payload", "payload"),
    ("Schedule", "cron_schedule"),
    ("Timezone", "timezone"),
    ("Next fire", "next_fire_at"),
    ("Max retries", "max_retries"),
    ("Timeout (s)", "timeout_seconds"),
    ("Queue", "queue"),
    ("Priority", "priority"),
    ("Overlap", "overlap"),
    ("Misfire", "misfire"),
    ("Start at", "start_at"),
    ("End at", "end_at"),
    ("Max fires", "max_fires"),
    ("DST gap", "dst_gap"),
    ("DST repeat", "dst_repeat"),
    ("Fires so far", "fire_count"),
    ("Paused fire", "paused_fire_at"),
    ("Idempotency key", "idempotency_key"),
    ("Created", "created_at"),
    ("Updated", "updated_at"),
)


def print_job(console: Console, found: Json, title: str | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, title=title, title_justify="left", box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, key in _JOB_FIELDS:
        value = found.get(key)
        if key == "status":
            cell: Text | str = status_text(value)
        elif key.endswith("_at"):
            cell = when(value)
        else:
            cell = Text("-" if value is None else str(value))
        table.add_row(label, cell)
    console.print(table)


def print_runs(console: Console, found: list[Json]) -> None:
    from rich.table import Table

    if not found:
        console.print("No runs yet.")
        return
    table = Table("RUN ID", "TRY", "STATUS", "SCHEDULED", "STARTED", "ENDED", "EXIT", "OUTPUT")
    for run in found:
        exit_code = run.get("exit_code")
        detail = run.get("output") or run.get("error_message")
        table.add_row(
            clip(str(run.get("run_id") or "")[:8]),
            str(run.get("attempt", "-")),
            status_text(run.get("status")),
            when(run.get("scheduled_for")),
            when(run.get("started_at")),
            when(run.get("completed_at")),
            "-" if exit_code is None else str(exit_code),
            clip(detail, 48),
        )
    console.print(table)
