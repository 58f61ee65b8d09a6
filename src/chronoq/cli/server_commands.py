"""Server commands: ``chronoq up`` (every role) and one command per role."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from chronoq.errors import ChronoqError
from chronoq.runtime.config import Settings, env_name
from chronoq.runtime.node import ROLES, Node
from chronoq.runtime.process import configure_logging, event_loop_runner

F = TypeVar("F", bound=Callable[..., Any])


def _opt(name: str, help_text: str, **kwargs: Any) -> Callable[[F], F]:
    flag = "--" + name.replace("_", "-")
    return click.option(flag, name, default=None, help=f"{help_text} [env: {env_name(name)}]",
                        **kwargs)  # fmt: skip


_OPTIONS: list[Callable[[F], F]] = [
    _opt("store", "Store URL: postgresql://... (distributed) or sqlite:///path; default: SQLite"
         " in the data dir."),
    _opt("ingest", "direct (api writes the store), log (api appends to a submission log in"
         " PostgreSQL, writers move it) or redis://host:port/db (the log in Redis)."
         " Default direct."),
    _opt("blob", "s3://bucket/prefix?endpoint=...&region=... for payloads and large"
         " outputs (default: the blob folder)."),
    _opt("blob_orphan_age", "Seconds before the leader deletes a payload object no job"
         " references (default 3600; 0 = never).", type=float),
    _opt("dispatch", "redis://... or sqs://... to carry run ids to workers (default: the"
         " store's run table)."),
    _opt("coordination", "etcd://host:port for leadership and shards (default: the"
         " store)."),
    _opt("host", "Address the HTTP API listens on (default 127.0.0.1)."),
    _opt("port", "HTTP port (default 8080).", type=int),
    _opt("data_dir", "Folder for the SQLite store and blobs (default ./.chronoq).",
         type=click.Path(path_type=Path)),
    _opt("blob_dir", "Folder for offloaded payloads (default DATA_DIR/blobs).",
         type=click.Path(path_type=Path)),
    _opt("node_id", "This process's member id (default host-pid-random)."),
    click.option("--shell/--no-shell", "shell", default=None,
                 help="Allow cmd: jobs (default: only when listening on loopback)"
                      f" [env: {env_name('shell')}]."),
    _opt("auth", "token (bearer tokens from 'chronoq token create') or header (X-User-ID, behind"
         " a gateway); default header on loopback, required elsewhere.",
         type=click.Choice(["header", "token"])),
    _opt("shell_users", "Header mode off loopback: users allowed cmd: jobs, comma-separated."),
    _opt("shell_user", "User cmd: jobs run as (default: nobody when root, else yours)."),
    _opt("echo_delay", "Seconds an echo job pretends to work (default 0).", type=float),
    _opt("worker_concurrency", "Runs one worker holds at once (default 4096).", type=int),
    _opt("worker_processes", "Embedded: run the worker in N child processes on the same"
         " SQLite file (default 0 = in this process).", type=int),
    _opt("queues", "Queues whose runs the worker claims, comma-separated (default: all)."),
    click.option("--queue-limit", "queue_limits", multiple=True, metavar="NAME=N",
                 callback=lambda _ctx, _param, value: ",".join(value) or None,
                 help="Most RUNNING runs of queue NAME in the cluster (repeatable; default:"
                      f" no limit) [env: {env_name('queue_limits')}, NAME=N,NAME=N]."),
    _opt("user_max_concurrent_runs", "Most RUNNING runs of one user in the cluster"
         " (default 0 = no limit).", type=int),
    _opt("default_timeout", "Timeout of jobs without timeout_seconds (default 3600).",
         type=float),
    _opt("retry_base", "First retry backoff ceiling, seconds (default 0.5).", type=float),
    _opt("retry_cap", "Largest retry backoff, seconds (default 60).", type=float),
    _opt("max_body_bytes", "Largest request body (default 1048576).", type=int),
    _opt("output_limit", "Bytes of job output kept (default 1048576).", type=int),
    _opt("output_offload_bytes", "Outputs above this many bytes go to the blob store"
         " (default 65536; 0 = never).", type=int),
    _opt("lease_seconds", "Run lease length; heartbeats every third (default 30).", type=float),
    _opt("lookahead", "Seconds ahead fires are claimed and timed (default 0.5).", type=float),
    _opt("shutdown_grace", "Seconds running jobs get at SIGTERM (default 10).", type=float),
    _opt("sqlite_synchronous", "SQLite synchronous mode (default FULL)."),
    _opt("shard_count", "Shards of the due index (default 256).", type=int),
    _opt("dispatch_rate", "Most fires a picker dispatches per second (default 0 = no cap).",
         type=float),
    _opt("user_max_active_jobs", "Per user: most jobs not finished; more is a 429"
         " (default 0 = unlimited).", type=int),
    _opt("user_max_fires_per_minute", "Per user: most fires per rolling minute; more wait"
         " (manual fires: 429) (default 0 = unlimited).", type=int),
    _opt("leader_ttl", "Leader lease, seconds (default 3).", type=float),
    _opt("member_ttl", "Silence after which a picker or worker is dead (default 3).",
         type=float),
    _opt("retention_hours", "Delete finished jobs and runs older than this (default 168;"
         " 0 keeps all).", type=float),
    _opt("idempotency_retention", "Seconds an Idempotency-Key is kept (default 86400;"
         " 0 keeps keys forever).", type=float),
    _opt("metrics_port", "Without the api role: serve /metrics here (default off).", type=int),
    _opt("log_level", "debug, info, warning or error (default info)."),
    _opt("max_interruptions", "Times a fire may be cut off by a lost worker before it is"
         " DEAD (default 3).", type=int),
    _opt("allowed_hosts", "Extra Host names the API answers, comma-separated ('*': any)."),
    _opt("cursor_key", "Secret that seals list cursors (shared by api processes)."),
]  # fmt: skip


def node_options(func: F) -> F:
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def run_node(roles: tuple[str, ...], options: dict[str, Any]) -> None:
    try:
        settings = Settings.load(os.environ, options)
    except ChronoqError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings)
    try:
        event_loop_runner()(Node(settings, roles).run())
    except ChronoqError as exc:
        click.echo(f"chronoq: {exc}", err=True)
        sys.exit(1)


@click.command()
@node_options
def up(**options: Any) -> None:
    """Start Chronoq with every role in one process (SQLite by default; --store for PostgreSQL)."""
    run_node(ROLES, options)


def _role_command(role: str, summary: str) -> click.Command:
    @click.command(name=role, help=summary)
    @node_options
    def command(**options: Any) -> None:
        run_node((role,), options)

    return command


ROLE_COMMANDS = (
    _role_command("api", "Run the HTTP API (with its group-committing writer)."),
    _role_command("coordinator", "Run a coordinator: leader election, shards, reaper."),
    _role_command("picker", "Run a picker: claims due fires of its shards."),
    _role_command("worker", "Run a worker: executes runs under leases."),
    _role_command("writer", "Run a writer: moves jobs from the submission log (--ingest log)."),
)


@click.command()
@click.option("--store", "store", envvar=env_name("store"), required=True,
              help=f"postgresql://... or sqlite:///path [env: {env_name('store')}]")  # fmt: skip
def migrate(store: str) -> None:
    """Apply the store's schema migrations (idempotent)."""
    from chronoq.runtime.wiring import migrate_store

    try:
        asyncio.run(migrate_store(store))
    except ChronoqError as exc:
        click.echo(f"chronoq: {exc}", err=True)
        sys.exit(1)
    click.echo("schema up to date")


SERVER_COMMANDS: tuple[click.Command, ...] = (up, *ROLE_COMMANDS, migrate)
