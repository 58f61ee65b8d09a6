"""What the api role needs, injected by the runtime."""

from __future__ import annotations

from dataclasses import dataclass, field

from chronoq.domain.clock import Clock
from chronoq.domain.limits import UserLimits
from chronoq.observability.metrics import Metrics
from chronoq.ports.jobs import JobStore
from chronoq.ports.notify import Notifier
from chronoq.ports.submissions import SubmissionLog
from chronoq.services.api.auth import Authenticator
from chronoq.services.api.ingest import Ingest


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiDeps:
    store: JobStore
    """Jobs and runs; the api never dispatches."""
    ingest: Ingest
    notifier: Notifier
    clock: Clock
    metrics: Metrics
    max_body_bytes: int
    shell_enabled: bool
    submissions: SubmissionLog | None = None
    """With --ingest log: where a just-accepted job waits until a writer moves it."""
    allowed_hosts: frozenset[str] = frozenset()
    """Host names served besides the loopback names and the listen address (``*``: any);
    see ``browser.py``."""
    auth: Authenticator | None = None
    """Who calls (``auth.py``); None: header mode, ``cmd:`` for anyone when shell_enabled."""
    user_limits: UserLimits = field(default_factory=UserLimits)
    """Per-user limits (docs/limits.md): the api enforces the fires limit on manual fires;
    the active-jobs limit is the writer's (its store insert)."""
    cursor_key: bytes | None = None
    """Secret that seals list cursors; API processes behind one balancer must share it.
    ``None``: a random key per process (a cursor then lasts as long as the process)."""
