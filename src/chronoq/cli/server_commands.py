"""Server commands: ``chronoq up``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from chronoq.errors import ChronoqError
from chronoq.runtime.config import Settings, env_name
from chronoq.runtime.node import Node

F = TypeVar("F", bound=Callable[..., Any])


def _opt(name: str, help_text: str, **kwargs: Any) -> Callable[[F], F]:
    flag = "--" + name.replace("_", "-")
    return click.option(flag, name, default=None, help=f"{help_text} [env: {env_name(name)}]",
                        **kwargs)  # fmt: skip


@click.command()
@_opt("host", "Address the HTTP API listens on (default 127.0.0.1).")
@_opt("port", "HTTP port (default 8080).", type=int)
@_opt("data_dir", "Folder for the SQLite store and blobs (default ./.chronoq).",
      type=click.Path(path_type=Path))  # fmt: skip
@click.option("--shell/--no-shell", "shell", default=None,
              help="Allow cmd: jobs (default: only when listening on loopback)"
                   f" [env: {env_name('shell')}].")  # fmt: skip
@_opt("echo_delay", "Seconds an echo job pretends to work (default 0).", type=float)
@_opt("worker_concurrency", "Runs one worker holds at once (default 4096).", type=int)
@_opt("default_timeout", "Timeout of jobs without timeout_seconds (default 3600).", type=float)
@_opt("retry_base", "First retry backoff ceiling, seconds (default 0.5).", type=float)
@_opt("retry_cap", "Largest retry backoff, seconds (default 60).", type=float)
@_opt("max_body_bytes", "Largest request body (default 1048576).", type=int)
@_opt("output_limit", "Bytes of job output kept (default 1048576).", type=int)
@_opt("lease_seconds", "Run lease length; heartbeats every third (default 30).", type=float)
@_opt("lookahead", "Seconds ahead fires are claimed and timed (default 0.5).", type=float)
@_opt("shutdown_grace", "Seconds running jobs get at SIGTERM (default 10).", type=float)
@_opt("sqlite_synchronous", "SQLite synchronous mode (default FULL).")
@_opt("log_level", "debug, info, warning or error (default info).")
def up(**options: Any) -> None:
    """Start Chronoq with every role in one process (embedded mode)."""
    try:
        settings = Settings.load(os.environ, options)
    except ChronoqError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    try:
        runner(Node(settings).run())
    except ChronoqError as exc:
        click.echo(f"chronoq: {exc}", err=True)
        sys.exit(1)


SERVER_COMMANDS: tuple[click.Command, ...] = (up,)
