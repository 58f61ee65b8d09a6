"""``chronoq cluster up|status``: a local multi-process cluster and a view of any cluster."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from chronoq.errors import ChronoqError
from chronoq.runtime.cluster import Cluster, ClusterPlan, read_state
from chronoq.runtime.stack import parse_with

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
@click.option("--with", "with_", default="", metavar="s3,sqs,redis,etcd",
              help="Start these backends next to the roles (the seed's stack): S3 payloads"
                   " (SeaweedFS), SQS dispatch (moto), Redis submission log (and dispatch"
                   " without sqs; 2 writers unless --writers), etcd coordination.")  # fmt: skip
@_FOLDER
def cluster_up(
    folder: Path, store: str | None, extra: tuple[str, ...], with_: str, **counts: Any
) -> None:
    """Start every role as its own process and supervise them (Ctrl-C stops all)."""
    try:
        backends = parse_with(with_)
    except ChronoqError as exc:
        raise click.ClickException(str(exc)) from None
    if "redis" in backends and not counts["writers"]:
        counts["writers"] = 2  # the seed's Kafka -> writer path
    if counts["ingest"] != "log" and not counts["writers"]:
        raise click.ClickException("--ingest needs --writers (nobody would move the jobs)")
    plan = ClusterPlan(folder=folder, store=store, extra=list(extra), backends=backends, **counts)
    node = Cluster(plan)
    try:
        node.start()
    except ChronoqError as exc:
        node.stop()
        raise click.ClickException(str(exc)) from None
    click.echo(f"store: {node.store}")
    for name, endpoint in node.stack.endpoints().items():
        click.echo(f"  {name:<15} {endpoint}  log {node.stack.servers[name].log_path}")
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
@click.option("--coordination", default=None,
              help="etcd://host:port when the roles use etcd; default: from the cluster"
                   " folder, else the store's.")  # fmt: skip
@_FOLDER
def cluster_status(folder: Path, store: str | None, coordination: str | None) -> None:
    """Show roles, the leader, shard owners, dispatch lag and each backend's health."""
    state = read_state(folder)
    url = store or (str(state["store"]) if state else None)
    if not url:
        raise click.UsageError(f"no --store and no running cluster in {folder}")
    if coordination is None:
        coordination = str(state.get("coordination") or "") if state else ""
    from chronoq.cli.cluster_status import gather, render

    try:
        snapshot = asyncio.run(gather(url, coordination))
    except ChronoqError as exc:
        click.echo(f"chronoq: {exc}", err=True)
        sys.exit(1)
    render(snapshot, state)


CLUSTER_COMMANDS: tuple[click.Command, ...] = (cluster,)
