"""Executors: one small class per payload kind, behind one interface (``base``).

``default_registry`` wires the seed's kinds: ``cmd:`` (shell, or refused when the
operator switched shell jobs off), ``sleep:``, and echo for everything else. New
kinds (``http:``, ``py:``) are classes with a ``prefix`` and an ``execute``,
registered with ``ExecutorRegistry.register``; the worker loop does not change.
"""

from __future__ import annotations

from chronoq.executors.base import (
    ExecutionRequest,
    ExecutionResult,
    Executor,
    ExecutorRegistry,
    RefusedExecutor,
)
from chronoq.executors.echo import EchoExecutor
from chronoq.executors.environment import scrubbed_environment
from chronoq.executors.shell import ShellExecutor
from chronoq.executors.sleep import SleepExecutor

__all__ = [
    "SHELL_DISABLED_REASON",
    "EchoExecutor",
    "ExecutionRequest",
    "ExecutionResult",
    "Executor",
    "ExecutorRegistry",
    "RefusedExecutor",
    "ShellExecutor",
    "SleepExecutor",
    "default_registry",
    "scrubbed_environment",
]

SHELL_DISABLED_REASON = "shell jobs (cmd:) are disabled on this server"


def default_registry(
    *, shell_enabled: bool, echo_delay: float = 0.0, shell: ShellExecutor | None = None
) -> ExecutorRegistry:
    """The seed's payload kinds.

    ``cmd:`` goes to ``shell`` (a default ``ShellExecutor`` if not given) when
    ``shell_enabled``, else fails with ``SHELL_DISABLED_REASON`` and runs nothing;
    ``sleep:`` goes to ``SleepExecutor``; anything else to ``EchoExecutor(delay=echo_delay)``.
    """
    registry = ExecutorRegistry(EchoExecutor(delay=echo_delay))
    if shell_enabled:
        registry.register(shell if shell is not None else ShellExecutor())
    else:
        registry.refuse(ShellExecutor.prefix, SHELL_DISABLED_REASON)
    registry.register(SleepExecutor())
    return registry
