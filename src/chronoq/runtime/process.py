"""What a node's process sets up around its roles: logging, the event loop, its secrets
kept from jobs, and the wait for a stop signal when it serves no HTTP."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from chronoq.runtime.config import Settings
from chronoq.runtime.hardening import forbid_dumping
from chronoq.services.base import log


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """``uvloop.run`` (uvicorn[standard] brings it), else ``asyncio.run``."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run
    run: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    return run


def protect_secrets() -> None:
    """No job may read this process's environment or memory (``runtime.hardening``)."""
    try:
        if not forbid_dumping():
            log.warning("not Linux: jobs running as this user can read this process's secrets")
    except OSError as exc:
        log.warning("could not mark the process non-dumpable (%s): jobs running as this"
                    " user can read its environment", exc)  # fmt: skip


async def wait_for_signal(*, child: bool = False) -> None:
    """Until SIGTERM or SIGINT; a worker process waits for SIGTERM alone: Ctrl-C reaches
    the whole foreground process group, and its parent stops it in turn."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM,) if child else (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not child:
        log.info("chronoq running; SIGTERM or Ctrl-C stops it")
    await stop.wait()
