"""Dispatch through an external run queue: ``--dispatch redis://...`` or ``sqs://...``.

``queued_dispatch(store, url)`` (called by ``runtime.wiring``) puts the RunQueue the
URL names (``chronoq.adapters.redis.run_queue`` or ``chronoq.adapters.sqs.run_queue``,
imported only when chosen) in front of the store's run table; see ``dispatch`` for
how the store stays the truth. docs/backends/dispatch.md tells the whole story.
"""

from __future__ import annotations

import importlib

from chronoq.adapters.queue.dispatch import OutboxStore, QueuedDispatch
from chronoq.errors import ConfigError
from chronoq.ports.dispatch import Outbox
from chronoq.ports.runqueue import RunQueue

__all__ = ["OutboxStore", "QueuedDispatch", "queued_dispatch", "run_queue"]

_PACKAGES = {"redis://": "redis", "sqs://": "sqs"}
"""URL scheme -> adapter package (also the name of its pip extra)."""


def run_queue(url: str) -> RunQueue:
    """The RunQueue adapter for ``url`` (``redis://`` or ``sqs://``)."""
    scheme = next((s for s in _PACKAGES if url.startswith(s)), None)
    if scheme is None:
        raise ConfigError(f"dispatch must be a redis:// or sqs:// URL, not {url[:40]!r}")
    package = _PACKAGES[scheme]
    try:
        module = importlib.import_module(f"chronoq.adapters.{package}")
        factory = module.run_queue
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"dispatch {scheme} needs an optional library: pip install 'chronoq[{package}]' ({exc})"
        ) from None
    queue: RunQueue = factory(url)
    return queue


def queued_dispatch(store: object, url: str) -> QueuedDispatch:
    """``store``'s Dispatch with the run queue at ``url`` in front (the store stays the
    truth). The store must keep an outbox (PostgreSQL; the memory store in tests)."""
    if not isinstance(store, Outbox):
        raise ConfigError(
            "dispatch (a run queue) needs the PostgreSQL store (--store postgresql://)"
        )
    return QueuedDispatch(store, run_queue(url))  # type: ignore[arg-type]
