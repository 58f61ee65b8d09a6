"""``Store``: one adapter that is both the ``JobStore`` and the ``Dispatch``.

The embedded and PostgreSQL deployments keep runs in the store's own table,
so one object serves both ports (DESIGN §3: "the store's run table"). Roles
never ask for a ``Store``: each names the port it uses. Only the wiring and
the contract tests handle the combined type.
"""

from __future__ import annotations

from typing import Protocol

from chronoq.ports.dispatch import Dispatch
from chronoq.ports.jobs import JobStore


class Store(JobStore, Dispatch, Protocol):
    """A JobStore that dispatches from its own run table."""
