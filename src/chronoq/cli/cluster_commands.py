"""``chronoq cluster up|status``: a local multi-process cluster and a view of any cluster."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from chronoq.errors import ChronoqError
from chronoq.runtime.cluster import Cluster, ClusterPlan, read_state

_FOLDER = click.option(
    "--folder", type=click.Path(path_type=Path), default=Path(".chronoq-cluster"),
    show_default=True, help="Where the cluster keeps its PostgreSQL, logs and state.",
)  # fmt: skip


@click.group()
def cluster() -> None:
    """Run a local multi-process cluster, or show the state of one."""


@cluster.command(name="up")
@click.option("--api", default=2, show_default=True, help="API processes (ports from --port).")
@click.option("--pickers", default=2, show_default=True)
@click.option("--workers", default=3, show_default=True)
@click.option("--coordinators", default=2, show_default=True)
@click.option("--writers", default=0, show_default=True,
              help="Writer processes; > 0 switches the api to --ingest log.")  # fmt: skip
@click.option("--ingest", default="log", show_default=True,
              help="With --writers, the submission log: log (PostgreSQL) or"
                   " redis://host:port/db.")  # fmt: skip
@click.option("--port", "base_port", default=8080, show_default=True, help="First API port.")
@click.option("--store", default=None, help="postgresql://...; default: a private PostgreSQL.")
@click.option("--arg", "extra", multiple=True, help="Extra option for every process, repeatable.")
@_FOLDER
def cluster_up(folder: Path, store: str | None, extra: tuple[str, ...], **counts: Any) -> None:
    """Start every role as its own process and supervise them (Ctrl-C stops all)."""
    if counts["ingest"] != "log" and not counts["writers"]:
        raise click.ClickException("--ingest needs --writers (nobody would move the jobs)")
    plan = ClusterPlan(folder=folder, store=store, extra=list(extra), **counts)
    node = Cluster(plan)
    try:
        node.start()
    except ChronoqError as exc:
        node.stop()
        raise click.ClickException(str(exc)) from None
    click.echo(f"store: {node.store}")
    for member in node.members:
        where = f"http://127.0.0.1:{member.port}" if member.port else ""
        click.echo(f"  {member.name:<15} pid {member.pid:<8} {where}  log {member.log}")
    click.echo("supervising; Ctrl-C stops the cluster")
    try:
        stopped = node.supervise(report=lambda message: click.echo(message, err=True))
    finally:
        node.stop()
        click.echo("cluster stopped")
    if not stopped:
        raise click.ClickException("every process exited at once; see the errors above")


@cluster.command(name="status")
@click.option("--store", default=None, help="postgresql://...; default: from the cluster folder.")
@_FOLDER
def cluster_status(folder: Path, store: str | None) -> None:
    """Show roles, the leader, shard owners and dispatch lag."""
    state = read_state(folder)
    url = store or (str(state["store"]) if state else None)
    if not url:
        raise click.UsageError(f"no --store and no running cluster in {folder}")
    from chronoq.cli.cluster_status import gather, render

    try:
        snapshot = asyncio.run(gather(url))
    except ChronoqError as exc:
        click.echo(f"chronoq: {exc}", err=True)
        sys.exit(1)
    render(snapshot, state)


CLUSTER_COMMANDS: tuple[click.Command, ...] = (cluster,)
