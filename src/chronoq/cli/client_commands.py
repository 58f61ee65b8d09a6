"""Client commands of ``chronoq``: ``submit``, ``jobs``, ``job``, ``runs``, ``cancel``.

They talk to a running server over HTTP (``--url``, ``$CHRONOQ_URL``) as one
user (``--user``, ``$CHRONOQ_USER``, default ``demo``: ``DEFAULT_USER``, the user
of the README's curl lines and Python example, so a new user sees the jobs they
made there), or with a token (``--token``, ``$CHRONOQ_TOKEN``) against a server
with ``--auth token``, where the token decides the user. Output is a table, or the
server's JSON with ``--json``. An API error prints one line to stderr and exits 1;
a usage error exits 2. ``cancel`` of a job that had already finished or been
cancelled says so and exits 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from chronoq.cli.policy_options import policies_of, policy_options
from chronoq.client import DEFAULT_URL, Client
from chronoq.errors import ChronoqError, LimitExceededError, ValidationError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = ["CLIENT_COMMANDS", "DEFAULT_USER"]

F = TypeVar("F", bound=Callable[..., Any])
Json = dict[str, Any]


DEFAULT_USER = "demo"
"""Who the CLI acts as without ``--user`` / ``$CHRONOQ_USER``: the README's user."""

_FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
"""Job statuses a cancel cannot change (``domain.states.JOB_TERMINAL``)."""


def _client_options(command: F) -> F:
    """``--url``, ``--user``, ``--token`` and ``--json``, shared by every client command."""
    command = click.option(
        "--json", "as_json", is_flag=True, help="Print the server's JSON instead of a table."
    )(command)
    command = click.option(
        "--token",
        envvar="CHRONOQ_TOKEN",
        default=None,
        expose_value=False,
        callback=_remember_token,
        help="API token (a server with --auth token); sent as 'Authorization: Bearer'.",
    )(command)
    command = click.option(
        "--user",
        envvar="CHRONOQ_USER",
        default=DEFAULT_USER,
        show_default=True,
        help="User id sent as X-User-ID.",
    )(command)
    command = click.option(
        "--url",
        envvar="CHRONOQ_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="Base URL of the Chronoq server.",
    )(command)
    return command


def _remember_token(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``--token`` is kept on the context, so no command signature has to carry it."""
    ctx.meta["chronoq.token"] = value


@contextmanager
def _api(url: str, user: str) -> Iterator[Client]:
    """A client whose errors become a one-line ``Error: ...`` and exit status 1."""
    token = click.get_current_context().meta.get("chronoq.token")
    try:
        with Client(url, user_id=user, token=token) as client:
            yield client
    except ChronoqError as exc:
        if isinstance(exc, ValidationError) and exc.field == "url":  # from Client(), not the server
            raise click.BadParameter(str(exc), param_hint="'--url'") from None
        raise click.ClickException(_describe(exc)) from None


def _describe(exc: ChronoqError) -> str:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, ValidationError) and exc.field and exc.field not in message:
        message = f"{message} (field {exc.field})"
    if isinstance(exc, LimitExceededError):  # a per-user limit: when to try again
        message = f"{message} (retry after {exc.retry_after}s)"
    return message


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _console() -> Console:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: don't squeeze ids into 80 columns
        console = Console(highlight=False, width=160)
    return console


# -- rendering (rich is imported only when a table is printed) -------------

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


def _status(value: object) -> Text:
    from rich.text import Text

    text = str(value or "-")
    return Text(text, style=_STATUS_STYLES.get(text, ""))


def _when(value: object) -> str:
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


def _clip(value: object, width: int | None = None) -> Text:
    """Literal text (never rich markup) on one line, cut to ``width``; ``-`` for nothing."""
    from rich.text import Text

    if value is None or value == "":
        return Text("-")
    text = " ".join(str(value).split())
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return Text(text)


def _print_jobs(console: Console, found: list[Json]) -> None:
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
            _clip(item.get("job_id")),
            _clip(item.get("project_id"), 24),
            _status(item.get("status")),
            _clip(item.get("payload"), 32),
            _clip(item.get("cron_schedule"), 24),
            _when(item.get("next_fire_at")),
            _last_run(item.get("last_run")),
            _when(item.get("created_at")),
        )
    console.print(table)


def _last_run(value: object) -> Text:
    """The newest run's status and when it ended (or was due), from a list item."""
    from rich.text import Text

    if not isinstance(value, dict):
        return Text("-")
    text = _status(value.get("status"))
    text.append(" " + _when(value.get("completed_at") or value.get("scheduled_for")))
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


def _print_job(console: Console, found: Json, title: str | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, title=title, title_justify="left", box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, key in _JOB_FIELDS:
        value = found.get(key)
        if key == "status":
            cell: Text | str = _status(value)
        elif key.endswith("_at"):
            cell = _when(value)
        else:
            cell = Text("-" if value is None else str(value))
        table.add_row(label, cell)
    console.print(table)


def _print_runs(console: Console, found: list[Json]) -> None:
    from rich.table import Table

    if not found:
        console.print("No runs yet.")
        return
    table = Table("RUN ID", "TRY", "STATUS", "SCHEDULED", "STARTED", "ENDED", "EXIT", "OUTPUT")
    for run in found:
        exit_code = run.get("exit_code")
        detail = run.get("output") or run.get("error_message")
        table.add_row(
            _clip(str(run.get("run_id") or "")[:8]),
            str(run.get("attempt", "-")),
            _status(run.get("status")),
            _when(run.get("scheduled_for")),
            _when(run.get("started_at")),
            _when(run.get("completed_at")),
            "-" if exit_code is None else str(exit_code),
            _clip(detail, 48),
        )
    console.print(table)


@click.command()
@click.argument("payload")
@click.option("--project", "-p", required=True, help="Project id of the job.")
@click.option("--cron", help="Cron schedule: 5 or 6 fields, '@every 30s', '@hourly'...")
@click.option("--at", "at", metavar="RFC3339", help="First fire time, e.g. 2030-01-02T03:04:05Z.")
@click.option("--retries", type=click.IntRange(min=0), help="Retries after a failed run.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Timeout of one run.",
)
@click.option("--timezone", metavar="TZ", help="IANA timezone of the cron schedule.")
@policy_options
@click.option(
    "--idempotency-key", metavar="KEY", help="Submitting again with it returns the same job."
)
@_client_options
def submit(
    payload: str,
    project: str,
    cron: str | None,
    at: str | None,
    retries: int | None,
    timeout: float | None,
    timezone: str | None,
    idempotency_key: str | None,
    url: str,
    user: str,
    as_json: bool,
    **options: Any,
) -> None:
    """Submit a job. PAYLOAD is 'cmd:<shell>', 'sleep:<duration>' or text to echo."""
    with _api(url, user) as client:
        job = client.submit(
            project,
            payload,
            cron_schedule=cron,
            next_fire_at=at,
            max_retries=retries,
            timeout_seconds=timeout,
            timezone=timezone,
            idempotency_key=idempotency_key,
            **policies_of(options),
        )
    if as_json:
        _print_json(job)
        return
    _print_job(_console(), job, title="Submitted")


@click.command()
@click.option(
    "--status",
    "-s",
    "statuses",
    multiple=True,
    help="Only jobs in this status, e.g. PENDING; repeat it (or use commas) for several.",
)
@click.option("--project", "-p", help="Only jobs of this project (exact).")
@click.option(
    "--kind",
    type=click.Choice(["once", "recurring"]),
    help="Only one-shot jobs, or only jobs with a schedule.",
)
@click.option("--queue", help="Only jobs of this queue (exact).")
@click.option(
    "--search", "-q", help="Jobs whose id starts with this, or whose project contains it."
)
@click.option("--limit", "-n", type=click.IntRange(min=1), default=100, show_default=True)
@_client_options
def jobs(
    statuses: tuple[str, ...],
    project: str | None,
    kind: str | None,
    queue: str | None,
    search: str | None,
    limit: int,
    url: str,
    user: str,
    as_json: bool,
) -> None:
    """List your jobs, oldest first, with each one's last run."""
    wanted = [s.strip().upper() for value in statuses for s in value.split(",") if s.strip()]
    with _api(url, user) as client:
        found = client.jobs(
            status=wanted or None,
            project_id=project,
            limit=limit,
            kind=kind,
            queue=queue,
            search=search,
        )
    if as_json:
        _print_json(found)
        return
    _print_jobs(_console(), found)


@click.command()
@click.argument("job_id")
@_client_options
def job(job_id: str, url: str, user: str, as_json: bool) -> None:
    """Show one job."""
    with _api(url, user) as client:
        found = client.job(job_id)
    if as_json:
        _print_json(found)
        return
    _print_job(_console(), found)


@click.command()
@click.argument("job_id")
@_client_options
def runs(job_id: str, url: str, user: str, as_json: bool) -> None:
    """List the runs of a job, newest first."""
    with _api(url, user) as client:
        found = client.runs(job_id)
    if as_json:
        _print_json(found)
        return
    _print_runs(_console(), found)


@click.command()
@click.argument("job_id")
@click.argument("run_id")
@_client_options
def output(job_id: str, run_id: str, url: str, user: str, as_json: bool) -> None:
    """Print a run's whole output (run lists show only its start)."""
    with _api(url, user) as client:
        text = client.run_output(job_id, run_id)
    if as_json:
        _print_json({"job_id": job_id, "run_id": run_id, "output": text})
        return
    click.echo(text, nl=not text.endswith("\n"))


@click.command()
@click.argument("job_id")
@_client_options
def cancel(job_id: str, url: str, user: str, as_json: bool) -> None:
    """Cancel a job (a running shell run is killed); exit 1 if it had already finished."""
    with _api(url, user) as client:
        before = client.job(job_id)
        cancelled = before if before.get("status") in _FINISHED else client.cancel(job_id)
    if as_json:
        _print_json(cancelled)
    status = cancelled.get("status")
    if before.get("status") in _FINISHED or status != "CANCELLED":  # or it finished meanwhile
        word = "cancelled" if status == "CANCELLED" else f"finished ({status})"
        raise click.ClickException(f"job {job_id} was already {word}; nothing to cancel")
    if not as_json:
        click.echo(f"Cancelled job {cancelled.get('job_id', job_id)} ({status})")


@click.command()
@_client_options
def whoami(url: str, user: str, as_json: bool) -> None:
    """Who the server takes you for, and whether it accepts your cmd: jobs."""
    with _api(url, user) as client:
        found = client.whoami()
    if as_json:
        _print_json(found)
        return
    from rich.text import Text

    shell = "allowed" if found.get("shell_allowed") else "not allowed"
    _console().print(Text(f"{found.get('user_id')} ({found.get('auth')} auth; shell jobs {shell})"))


CLIENT_COMMANDS: tuple[click.Command, ...] = (submit, jobs, job, runs, output, cancel, whoami)
