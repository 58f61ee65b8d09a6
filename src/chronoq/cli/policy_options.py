"""The schedule-policy flags, and the queue and priority, that ``chronoq submit`` and
``chronoq edit`` share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from chronoq.domain.queues import MAX_PRIORITY, MIN_PRIORITY

F = TypeVar("F", bound=Callable[..., Any])

_SECONDS = click.FloatRange(min=0)
POLICY_OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--overlap", "A fire due while the last run still runs (recurring jobs).",
     {"type": click.Choice(["allow", "skip", "buffer_one", "cancel_previous"])}),
    ("--misfire", "Fires missed while nothing could run them.",
     {"type": click.Choice(["run_once", "run_all", "skip"])}),
    ("--catch-up-window", "misfire run_all: how far back missed fires run (seconds).",
     {"type": _SECONDS, "metavar": "SECONDS"}),
    ("--start-deadline", "Skip a fire not started this long after its time (seconds).",
     {"type": _SECONDS, "metavar": "SECONDS"}),
    ("--jitter", "Start each fire up to this much later, fixed per fire (seconds).",
     {"type": _SECONDS, "metavar": "SECONDS"}),
    ("--start-at", "No fire before this instant.", {"metavar": "RFC3339"}),
    ("--end-at", "No fire after this instant (recurring jobs).", {"metavar": "RFC3339"}),
    ("--max-fires", "At most this many fires (recurring jobs).",
     {"type": click.IntRange(min=1)}),
    ("--dst-gap", "A wall time DST skips: fire at the transition, or not (with --timezone).",
     {"type": click.Choice(["auto", "shift", "skip"])}),
    ("--dst-repeat", "A wall time DST repeats: fire at the first, or both (with --timezone).",
     {"type": click.Choice(["auto", "first", "both"])}),
    ("--queue", "Queue its runs go to: workers started with --queues take them"
     " (default: default).", {"metavar": "NAME"}),
    ("--priority", "Higher starts first among ready runs, -1000..1000 (default 0).",
     {"type": click.IntRange(min=MIN_PRIORITY, max=MAX_PRIORITY)}),
)  # fmt: skip
_ARG_OF = {
    "catch_up_window": "catch_up_window_seconds",
    "start_deadline": "start_deadline_seconds",
    "jitter": "jitter_seconds",
}


def policy_options(command: F) -> F:
    """The ``POLICY_OPTIONS`` flags; the command receives them as keyword arguments."""
    for flag, text, extra in reversed(POLICY_OPTIONS):
        command = click.option(flag, help=text, default=None, **extra)(command)
    return command


def policies_of(options: dict[str, Any]) -> dict[str, Any]:
    """The given policy flags as ``Client.submit`` / ``update`` keyword arguments."""
    names = [flag[2:].replace("-", "_") for flag, _t, _e in POLICY_OPTIONS]
    return {_ARG_OF.get(n, n): options[n] for n in names if options.get(n) is not None}
