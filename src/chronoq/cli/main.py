"""The ``chronoq`` command group: server commands and client commands."""

from __future__ import annotations

import click

from chronoq.cli.client_commands import CLIENT_COMMANDS
from chronoq.cli.cluster_commands import CLUSTER_COMMANDS
from chronoq.cli.control_commands import CONTROL_COMMANDS
from chronoq.cli.logs_command import logs
from chronoq.cli.preview_command import preview_command
from chronoq.cli.server_commands import SERVER_COMMANDS
from chronoq.cli.token_commands import TOKEN_COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chronoq")
def main() -> None:
    """Chronoq: a distributed job scheduler."""


for _command in (
    *SERVER_COMMANDS,
    *TOKEN_COMMANDS,
    *CLUSTER_COMMANDS,
    *CLIENT_COMMANDS,
    *CONTROL_COMMANDS,
    preview_command,
    logs,
):
    main.add_command(_command)
