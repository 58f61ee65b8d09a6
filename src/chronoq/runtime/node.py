"""A node: one process hosting a set of roles over one set of backends.

``chronoq up`` runs every role; ``chronoq api|picker|worker|coordinator`` one
each. Start order makes recovery safe (the coordinator hands back orphaned
runs before any worker claims); stop order makes shutdown graceful (the API
stops accepting first, workers finish or hand back their runs, the writer
drains, the backends close).
"""

from __future__ import annotations

import getpass
import math
import os
import socket
import uuid

import uvicorn
from starlette.applications import Starlette

from chronoq import failpoints
from chronoq.domain.clock import Clock, SystemClock
from chronoq.domain.retry import RetryPolicy
from chronoq.errors import ConfigError
from chronoq.executors import ShellExecutor, default_registry, scrubbed_environment
from chronoq.executors.identity import resolve_shell_user
from chronoq.observability.metrics import Metrics
from chronoq.ports.coordination import LEASE_OWNER, Member
from chronoq.ports.dispatch import Relay
from chronoq.ports.notify import SUBMISSIONS
from chronoq.ports.submissions import SubmissionLog
from chronoq.runtime.config import Settings
from chronoq.runtime.http_serving import Server, api_hosts, authenticator, bind_listener, cursor_key
from chronoq.runtime.process import protect_secrets, wait_for_signal
from chronoq.runtime.wiring import Backends, build_backends
from chronoq.runtime.worker_processes import (
    READY,
    ChildLink,
    MetricsFile,
    Peers,
    WorkerProcesses,
)
from chronoq.services.api import ApiDeps, create_app, create_metrics_app
from chronoq.services.api.ingest import Ingest
from chronoq.services.assignment import AssignmentFollower
from chronoq.services.base import Service, log
from chronoq.services.blob_metrics import CountedBlobStore
from chronoq.services.coordinator import Coordinator, CoordinatorConfig
from chronoq.services.gauges import ClusterSampler, watch_coordinator, watch_worker
from chronoq.services.membership import Heartbeat
from chronoq.services.picker import Picker
from chronoq.services.worker import Worker, WorkerConfig
from chronoq.services.writer import SubmissionMover, Writer, into_log, into_store

ROLES = ("api", "coordinator", "picker", "worker", "writer")


class Node:
    def __init__(
        self, settings: Settings, roles: tuple[str, ...] = ROLES, clock: Clock | None = None,
        *, child: ChildLink | None = None,
    ) -> None:  # fmt: skip
        """``child``: this node is a worker process of an embedded node
        (``runtime.worker_processes``)."""
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}")
        self.settings = settings
        self.roles = roles
        self.child = child
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.node_id = settings.node_id or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self._incarnation = uuid.uuid4().hex[:8]
        """Tells this process from an earlier one under the same node id (lease owners)."""

    async def run(self) -> None:
        failpoints.configure(self.settings.failpoints)
        protect_secrets()
        # Bind first: a busy port stops the node before anything starts or claims to listen.
        listener = self._bind()
        parent = self.child.parent if self.child is not None else None
        backends = build_backends(self.settings, self.clock, parent=parent)
        backends.blob = CountedBlobStore(backends.blob, self.metrics)  # s3_operations_total
        services: list[Service] = []
        try:
            await backends.start()
            services, writer = self._services(backends)
            for service in services:
                await service.start()
            if self.child is not None:
                backends.notifier.publish(READY, str(self.child.slot))
            await self._serve(backends, writer, listener)
        finally:
            if listener is not None:
                listener.close()
            for service in reversed(services):
                try:
                    await service.stop()
                except Exception:
                    log.exception("stopping %s failed", service.name)
            await backends.close()
            log.info("chronoq %s stopped", "+".join(self.roles))

    def _services(self, b: Backends) -> tuple[list[Service], Writer | None]:
        s = self.settings
        retry = RetryPolicy(base_seconds=s.retry_base, cap_seconds=s.retry_cap)
        services: list[Service] = []
        processes = self._worker_processes(b)
        if "coordinator" in self.roles:
            coordinator = self._coordinator(b, retry, processes)
            watch_coordinator(self.metrics, coordinator)
            services += [coordinator, ClusterSampler(
                coordinator, b.jobs, b.coordination, self.clock, self.metrics,
                member_ttl=self.settings.member_ttl, dispatch=b.dispatch, blob=b.blob)]  # fmt: skip
            if b.distributed:
                services.append(self._heartbeat(b, "coordinator"))
        writer = self._api_writer(b) if "api" in self.roles else None
        if writer is not None:
            services.append(writer)
            if b.distributed:
                services.append(self._heartbeat(b, "api"))
        if "writer" in self.roles and b.submissions is not None:
            services += [self._heartbeat(b, "writer"), self._mover(b, b.submissions)]
        elif self.roles == ("writer",):
            raise ConfigError(
                "a writer process moves jobs from the submission log: start it (and the api)"
                " with --ingest log; with direct ingestion each api process writes itself"
            )
        if "picker" in self.roles:
            services.extend(self._picker(b))
        if processes is not None:
            services.append(processes)  # last: started after the coordinator's recovery
        elif "worker" in self.roles:
            services.extend(self._worker(b, retry))
        if self.child is not None:
            services.append(MetricsFile(self.metrics, self.child.metrics_file, self.clock))
        return services, writer

    def _worker_processes(self, b: Backends) -> WorkerProcesses | None:
        """The worker role in child processes (embedded, ``--worker-processes``)."""
        if b.distributed or self.child is not None or "worker" not in self.roles:
            return None
        if not self.settings.worker_processes:
            return None
        if "coordinator" not in self.roles:  # it hands back the runs of a child that died
            raise ConfigError("--worker-processes runs with every role: use chronoq up")
        assert isinstance(b.notifier, Peers)
        return WorkerProcesses(
            self.settings, b.notifier, self.clock, self.metrics, node_id=self.node_id,
            inherited_fds=() if b.lock is None else (b.lock.fileno(),),
        )  # fmt: skip

    def _api_writer(self, b: Backends) -> Writer:
        """Group-commits into the store, or into the submission log with --ingest log."""
        if b.submissions is not None:
            return Writer(into_log(b.submissions), b.notifier, self.clock, channel=SUBMISSIONS)
        active = self.settings.user_max_active_jobs
        return Writer(into_store(b.jobs, max_active_per_user=active), b.notifier, self.clock)

    def _fires_at_insert(self, b: Backends) -> bool:
        """An immediate job's first fire is claimed in its insert (``domain.fire_now``) unless
        it must pass a picker: buffered ingestion, a dispatch rate cap or a per-user fires
        limit. Every api process of a cluster needs those flags as its pickers have them."""
        s = self.settings
        return b.submissions is None and not s.dispatch_rate and not s.user_max_fires_per_minute

    def _mover(self, b: Backends, submissions: SubmissionLog) -> SubmissionMover:
        return SubmissionMover(
            submissions, b.jobs, b.notifier, self.clock, self.metrics,
            consumer=self._member_id("writer"),
        )  # fmt: skip

    def _coordinator(
        self, b: Backends, retry: RetryPolicy, processes: WorkerProcesses | None
    ) -> Coordinator:
        s = self.settings
        return Coordinator(
            b.dispatch, b.jobs, b.blob, b.notifier, b.coordination, self.clock, self.metrics,
            CoordinatorConfig(
                node_id=self.node_id, lease_seconds=s.lease_seconds, retry=retry,
                recover_orphans=not b.distributed, distributed=b.distributed,
                leader_ttl=s.leader_ttl, member_ttl=s.member_ttl, shard_count=s.shard_count,
                retention_hours=s.retention_hours, max_interruptions=s.max_interruptions,
                idempotency_retention=s.idempotency_retention,
                orphan_age=s.blob_orphan_age,
            ),
            relay=b.dispatch if isinstance(b.dispatch, Relay) else None,
            live_workers=None if processes is None else processes.live_workers,
        )  # fmt: skip

    def _picker(self, b: Backends) -> list[Service]:
        s = self.settings
        rate = s.dispatch_rate or math.inf
        if not b.distributed:  # one picker owns every shard
            return [
                Picker(b.dispatch, b.notifier, self.clock, self.metrics,
                       lookahead=s.lookahead, dispatch_rate=rate,
                       user_max_fires_per_minute=s.user_max_fires_per_minute)
            ]  # fmt: skip
        follower = AssignmentFollower(b.coordination, self._member_id("picker"), self.clock)
        picker = Picker(
            b.dispatch, b.notifier, self.clock, self.metrics,
            lookahead=s.lookahead, assignment=follower, dispatch_rate=rate,
            user_max_fires_per_minute=s.user_max_fires_per_minute,
        )  # fmt: skip
        return [self._heartbeat(b, "picker"), picker]

    def _shell(self) -> ShellExecutor | None:
        """The ``cmd:`` executor, running jobs as ``--shell-user`` (nobody when root)."""
        if not self.settings.shell_enabled:
            return None
        run_as = resolve_shell_user(self.settings.shell_user)
        log.info("shell jobs run as %s", run_as.name if run_as else getpass.getuser())
        return ShellExecutor(run_as=run_as)

    def _worker(self, b: Backends, retry: RetryPolicy) -> list[Service]:
        s = self.settings
        # Distributed: the lease owner is the membership id plus this process's incarnation,
        # announced in the member row (ports.coordination.lease_owners). The reaper hands
        # back the runs of owners that are not live, a restart under the same id included.
        worker_id = self._lease_owner() if b.distributed else self.node_id
        worker = Worker(
            b.dispatch, b.blob, b.notifier, self.clock, self.metrics,
            default_registry(
                shell_enabled=s.shell_enabled, echo_delay=s.echo_delay, shell=self._shell()
            ),
            WorkerConfig(
                worker_id=worker_id, concurrency=s.worker_concurrency,
                lease_seconds=s.lease_seconds, lookahead=s.lookahead,
                default_timeout=s.default_timeout, output_limit=s.output_limit, retry=retry,
                output_offload_bytes=s.output_offload_bytes,
                shutdown_grace=s.shutdown_grace, env=scrubbed_environment(os.environ),
                max_interruptions=s.max_interruptions,
                queues=s.worker_queues, limits=s.claim_limits,
            ),
        )  # fmt: skip
        watch_worker(self.metrics, worker)
        return [self._heartbeat(b, "worker"), worker] if b.distributed else [worker]

    def _member_id(self, role: str) -> str:
        """The node id, or ``node/role`` when this node hosts several roles."""
        return self.node_id if len(self.roles) == 1 else f"{self.node_id}/{role}"

    def _lease_owner(self) -> str:
        return f"{self._member_id('worker')}#{self._incarnation}"

    def _heartbeat(self, b: Backends, role: str) -> Heartbeat:
        info = {LEASE_OWNER: self._lease_owner()} if role == "worker" else {}
        member = Member(
            member_id=self._member_id(role), role=role, host=socket.gethostname(),
            pid=os.getpid(), info=info,
        )  # fmt: skip
        return Heartbeat(b.coordination, member, self.clock, ttl=self.settings.member_ttl)

    def _bind(self) -> socket.socket | None:
        """The HTTP listener of this node (api, or /metrics without it), bound; None if none."""
        s = self.settings
        if self.child is not None:
            return None  # its parent serves /metrics, this process's included
        if "api" in self.roles:
            s.auth_mode  # noqa: B018 - refuses an unauthenticated API off loopback, first
            return bind_listener(s.host, s.port)
        if s.metrics_port:
            return bind_listener(s.host, s.metrics_port)
        return None

    async def _serve(
        self, b: Backends, writer: Writer | None, listener: socket.socket | None
    ) -> None:
        s = self.settings
        if writer is not None:
            app = create_app(
                ApiDeps(
                    store=b.jobs, notifier=b.notifier, clock=self.clock, metrics=self.metrics,
                    ingest=Ingest(
                        writer, b.blob, self.clock, self.metrics, s.shard_count,
                        fire_at_insert=self._fires_at_insert(b),
                    ),
                    submissions=b.submissions,
                    max_body_bytes=s.max_body_bytes, shell_enabled=s.shell_enabled,
                    allowed_hosts=api_hosts(s), cursor_key=cursor_key(s),
                    auth=authenticator(s, b, self.clock), user_limits=s.user_limits,
                )
            )  # fmt: skip
        elif listener is not None:
            app = create_metrics_app(self.metrics)
        else:
            await wait_for_signal(child=self.child is not None)
            return
        assert listener is not None
        await self._serve_http(app, listener)

    async def _serve_http(self, app: Starlette, listener: socket.socket) -> None:
        host, port = self.settings.host, listener.getsockname()[1]
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False,
            lifespan="off", timeout_graceful_shutdown=5, backlog=4096,
        )  # fmt: skip
        s = self.settings
        log.info(
            "chronoq %s on http://%s:%d (store %s, shell jobs %s, auth %s)",
            "+".join(self.roles), host, port, "PostgreSQL" if s.distributed else s.data_dir,
            "on" if s.shell_enabled else "off", s.auth_mode if "api" in self.roles else "-",
        )  # fmt: skip
        await Server(config).serve(sockets=[listener])
