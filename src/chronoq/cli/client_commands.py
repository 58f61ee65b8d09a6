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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from chronoq.cli.policy_options import policies_of, policy_options
from chronoq.cli.render import console, print_job, print_jobs, print_json, print_runs
from chronoq.client import DEFAULT_URL, Client
from chronoq.errors import ChronoqError, LimitExceededError, ValidationError

__all__ = ["CLIENT_COMMANDS", "DEFAULT_USER"]

F = TypeVar("F", bound=Callable[..., Any])


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
        print_json(job)
        return
    print_job(console(), job, title="Submitted")


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
        print_json(found)
        return
    print_jobs(console(), found)


@click.command()
@click.argument("job_id")
@_client_options
def job(job_id: str, url: str, user: str, as_json: bool) -> None:
    """Show one job."""
    with _api(url, user) as client:
        found = client.job(job_id)
    if as_json:
        print_json(found)
        return
    print_job(console(), found)


@click.command()
@click.argument("job_id")
@_client_options
def runs(job_id: str, url: str, user: str, as_json: bool) -> None:
    """List the runs of a job, newest first."""
    with _api(url, user) as client:
        found = client.runs(job_id)
    if as_json:
        print_json(found)
        return
    print_runs(console(), found)


@click.command()
@click.argument("job_id")
@click.argument("run_id")
@_client_options
def output(job_id: str, run_id: str, url: str, user: str, as_json: bool) -> None:
    """Print a run's whole output (run lists show only its start)."""
    with _api(url, user) as client:
        text = client.run_output(job_id, run_id)
    if as_json:
        print_json({"job_id": job_id, "run_id": run_id, "output": text})
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
        print_json(cancelled)
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
        print_json(found)
        return
    from rich.text import Text

    shell = "allowed" if found.get("shell_allowed") else "not allowed"
    console().print(Text(f"{found.get('user_id')} ({found.get('auth')} auth; shell jobs {shell})"))


CLIENT_COMMANDS: tuple[click.Command, ...] = (submit, jobs, job, runs, output, cancel, whoami)
