"""A node: one process hosting a set of roles over one set of backends.

``chronoq up`` runs every role here on embedded backends. Start order makes
recovery safe (the coordinator hands back orphaned runs before any worker
claims); stop order makes shutdown graceful (the API stops accepting first,
workers finish or hand back their runs, the writer drains, the store closes).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from chronoq.domain.clock import Clock, SystemClock
from chronoq.domain.retry import RetryPolicy
from chronoq.executors import default_registry, scrubbed_environment
from chronoq.observability.metrics import Metrics
from chronoq.runtime.config import Settings
from chronoq.runtime.wiring import Backends, embedded_backends
from chronoq.services.api import ApiDeps, create_app
from chronoq.services.api.ingest import Ingest
from chronoq.services.base import Service, log
from chronoq.services.coordinator import Coordinator
from chronoq.services.picker import Picker
from chronoq.services.worker import Worker, WorkerConfig
from chronoq.services.writer import Writer


class _Server(uvicorn.Server):
    """uvicorn, minus its habit of re-raising SIGTERM after serving: the node stops first."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


class Node:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = Metrics()

    async def run(self) -> None:
        backends = embedded_backends(self.settings)
        await backends.start()
        roles: list[Service] = []
        try:
            roles, writer = self._roles(backends)
            for role in roles:
                await role.start()
            await self._serve(backends, writer)
        finally:
            for role in reversed(roles):
                try:
                    await role.stop()
                except Exception:
                    log.exception("stopping %s failed", role.name)
            await backends.close()
            log.info("chronoq stopped")

    def _roles(self, b: Backends) -> tuple[list[Service], Writer]:
        s = self.settings
        retry = RetryPolicy(base_seconds=s.retry_base, cap_seconds=s.retry_cap)
        writer = Writer(b.store, b.notifier)
        coordinator = Coordinator(
            b.store, b.notifier, self.clock, self.metrics,
            lease_seconds=s.lease_seconds, retry=retry, recover_orphans=True,
        )  # fmt: skip
        picker = Picker(b.store, b.notifier, self.clock, self.metrics, lookahead=s.lookahead)
        worker = Worker(
            b.store, b.blob, b.notifier, self.clock, self.metrics,
            default_registry(shell_enabled=s.shell_enabled, echo_delay=s.echo_delay),
            WorkerConfig(
                worker_id=f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
                concurrency=s.worker_concurrency, lease_seconds=s.lease_seconds,
                lookahead=s.lookahead, default_timeout=s.default_timeout,
                output_limit=s.output_limit, retry=retry, shutdown_grace=s.shutdown_grace,
                env=scrubbed_environment(os.environ),
            ),
        )  # fmt: skip
        return [coordinator, writer, picker, worker], writer

    async def _serve(self, b: Backends, writer: Writer) -> None:
        s = self.settings
        ingest = Ingest(writer, b.blob, self.clock, self.metrics, s.shard_count)
        app = create_app(
            ApiDeps(
                store=b.store, ingest=ingest, notifier=b.notifier, clock=self.clock,
                metrics=self.metrics, max_body_bytes=s.max_body_bytes,
                shell_enabled=s.shell_enabled,
            )
        )  # fmt: skip
        config = uvicorn.Config(
            app,
            host=s.host,
            port=s.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            limit_max_requests=None,
            backlog=4096,
        )
        log.info(
            "chronoq up on http://%s:%d (data dir %s, shell jobs %s)",
            s.host, s.port, s.data_dir, "on" if s.shell_enabled else "off",
        )  # fmt: skip
        await _Server(config).serve()
