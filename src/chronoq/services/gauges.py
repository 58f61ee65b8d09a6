"""Gauges of the cluster's state: who leads, what is waiting, who is alive.

Counters are incremented where things happen; these values are states that a role
knows, so they are read when Prometheus scrapes (``Gauge.set_function``) or, for
what costs a store query, sampled by the leader:

* ``watch_coordinator``: ``coordinator_leader`` and ``coordinator_leader_epoch``
  straight from the coordinator (exact at every scrape, no loop).
* ``watch_worker``: ``worker_runs_held``.
* ``ClusterSampler`` runs on every coordinator; while its coordinator leads it
  reads ``JobStore.backlog`` and the live members every ``every`` seconds into
  ``Metrics.cluster`` (``dispatch_backlog``, ``dispatch_oldest_due_age_seconds``,
  ``cluster_members_alive``, and with a queued dispatch (``--dispatch redis://|sqs://``)
  ``dispatch_queue_messages``, the broker queues' ``RunQueue.depth`` summed; ``fires_skipped_total``
  from ``JobStore.skip_counts``); while it does not, it
  exports none of them, so one cluster shows one set of numbers whichever coordinator
  leads. One leader-only query per period keeps the cost off the store's hot path.
  The same look is each backend's health, ``backend_up{backend}`` (1: the leader's last
  call to it answered, 0: it failed): ``store`` and ``coordination`` from the calls
  above, ``dispatch`` from the broker's depth (a queued dispatch only), ``blob`` from a
  one-key listing. A failed backend does not hide the others' health.

(``picker_shards_owned`` is set by the picker itself when it reads its assignment.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, runtime_checkable

from chronoq.domain.clock import Clock
from chronoq.observability.metrics import ClusterSample, Metrics
from chronoq.ports.blob import BlobStore
from chronoq.ports.coordination import Coordination
from chronoq.ports.jobs import JobStore
from chronoq.services.base import Loop, log
from chronoq.services.coordinator import Coordinator
from chronoq.services.worker import Worker

T = TypeVar("T")


@runtime_checkable
class Queued(Protocol):
    """A dispatch with a run queue in front of the store (``adapters.queue``)."""

    async def depth(self) -> int:
        """Messages waiting or in flight over every broker queue (``RunQueue.depth``)."""
        ...


def watch_coordinator(metrics: Metrics, coordinator: Coordinator) -> None:
    metrics.leader.set_function(lambda: 1.0 if coordinator.is_leader else 0.0)
    metrics.leader_epoch.set_function(lambda: float(coordinator.epoch or 0))


def watch_worker(metrics: Metrics, worker: Worker) -> None:
    metrics.runs_held.set_function(lambda: float(worker.held))


class ClusterSampler:
    name = "cluster-gauges"

    def __init__(
        self,
        coordinator: Coordinator,
        jobs: JobStore,
        coordination: Coordination,
        clock: Clock,
        metrics: Metrics,
        *,
        member_ttl: float,
        dispatch: object = None,
        blob: BlobStore | None = None,
        every: float = 2.0,
    ) -> None:
        """``dispatch``: the node's, to sample its broker's depth when it is ``Queued``;
        ``blob``: the node's blob store, whose health is reported too."""
        self._coordinator = coordinator
        self._jobs = jobs
        self._coordination = coordination
        self._clock = clock
        self._metrics = metrics
        self._member_ttl = member_ttl
        self._every = every
        self._queue = dispatch if isinstance(dispatch, Queued) else None
        self._blob = blob
        self._loop = Loop("cluster-gauges", self._tick, clock)

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        self._metrics.cluster.sample = None
        self._metrics.cluster.health = None

    async def _tick(self) -> float:
        if not self._coordinator.is_leader:
            self._metrics.cluster.sample = None
            self._metrics.cluster.health = None
            return self._every
        now = self._clock.now()
        health: dict[str, bool] = {}

        async def probe(backend: str, call: Callable[[], Awaitable[T]]) -> T | None:
            try:
                answer = await call()
            except Exception as exc:  # each backend's own verdict; the others go on
                if health.get(backend, True):
                    log.warning("cluster-gauges: %s did not answer: %s", backend, exc)
                health[backend] = False
                return None
            health.setdefault(backend, True)
            return answer

        backlog = await probe("store", lambda: self._jobs.backlog(now))
        skipped = await probe("store", self._jobs.skip_counts)
        members = await probe("coordination", lambda: self._coordination.members(
            ttl=self._member_ttl))  # fmt: skip
        queue, depth = self._queue, None
        if queue is not None:
            depth = await probe("dispatch", queue.depth)
        if self._blob is not None:
            blob = self._blob
            await probe("blob", lambda: blob.list_objects("payloads/", limit=1))
        self._metrics.cluster.health = health
        if backlog is None or skipped is None or members is None or not health["store"]:
            self._metrics.cluster.sample = None  # stale numbers would look like a steady state
            return self._every
        oldest = backlog.oldest_due
        self._metrics.cluster.sample = ClusterSample(
            due=backlog.due,
            queued=backlog.queued,
            running=backlog.running,
            oldest_due_age=0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0),
            members=Counter(m.role for m in members),
            queue_messages=depth,
            skipped=skipped,
        )
        return self._every
