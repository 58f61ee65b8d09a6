"""Prometheus metrics, with the seed's names and label values. No label carries
unbounded values.

The seed's README lists, and dashboards written for the seed query:
``http_requests_total``, ``jobs_executed_total{status="success|failed"}``,
``job_execution_duration_seconds``, ``s3_operations_total{operation="upload|download|delete|list"}``
and ``sqs_enqueue_duration_seconds`` (here: the time a picker takes to hand due runs
to dispatch, or the api the runs of jobs fired at insert: their insert's commit).
Chronoq's detailed run statuses are ``runs_finished_total{status}``.

Gauges of the cluster's state (docs/backends/prometheus.md): ``coordinator_leader`` and
``coordinator_leader_epoch`` (every coordinator, read at scrape time),
``picker_shards_owned`` (every picker), ``worker_runs_held`` (every worker), and, from the
leading coordinator only (``ClusterView``: other processes export none, so ``sum`` never
counts twice), ``dispatch_backlog{state="due|queued|running"}``,
``dispatch_oldest_due_age_seconds``, ``cluster_members_alive{member_role}`` (not
``role``: scrape configs label each target with its ``role``), with a run queue,
``dispatch_queue_messages``, and ``fires_skipped_total{reason}``: nominal fires that got no
run, per ``SkipReason`` (the store's running totals, so the counter survives restarts
and failovers). Per-user limits (docs/limits.md): ``user_limit_refusals_total{limit}`` and
``user_limit_deferrals_total{limit}``, labelled by the limit, never by user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from chronoq.domain.policies import SkipReason
from chronoq.domain.states import RunStatus
from chronoq.observability.exposition import exposition

LIMIT_ACTIVE_JOBS = "active_jobs"
LIMIT_FIRES_PER_MINUTE = "fires_per_minute"
"""The ``limit`` label values of ``user_limit_*`` (never a user id: unbounded)."""

SEED_SUCCESS = "success"
SEED_FAILED = "failed"
SEED_STATUS: dict[str, str] = {
    RunStatus.COMPLETED.value: SEED_SUCCESS,
    RunStatus.FAILED.value: SEED_FAILED,
    RunStatus.TIMED_OUT.value: SEED_FAILED,
    RunStatus.RETRY_SCHEDULED.value: SEED_FAILED,
}
"""A finished attempt's run status -> the seed's ``jobs_executed_total`` status. Attempts
that did not fail by themselves (CANCELLED by the user, INTERRUPTED, DEAD, SKIPPED) count
only in ``runs_finished_total``."""


class FinishedRuns:
    """``labels(run_status).inc()`` counts an attempt both ways: its run status in
    ``runs_finished_total`` and success/failed in the seed's ``jobs_executed_total``."""

    def __init__(self, detailed: Counter, seed: Counter) -> None:
        self.detailed = detailed
        self.seed = seed
        for value in (SEED_SUCCESS, SEED_FAILED):
            seed.labels(value)  # exported at 0 from the start, so rate() finds them
        for status in RunStatus:  # likewise: a series born at 5 shows no rate for its first 5
            if status not in (RunStatus.QUEUED, RunStatus.RUNNING):
                detailed.labels(status.value)
        self._children: dict[str, _FinishedRun] = {}
        """One pair of labelled children per status: ``labels()`` is on every run's path."""

    def labels(self, status: str) -> _FinishedRun:
        child = self._children.get(status)
        if child is None:
            seed_status = SEED_STATUS.get(status)
            child = self._children[status] = _FinishedRun(
                self.detailed.labels(status),
                None if seed_status is None else self.seed.labels(seed_status),
            )
        return child


class _FinishedRun:
    def __init__(self, detailed: Any, seed: Any) -> None:
        self._detailed = detailed
        self._seed = seed

    def inc(self, amount: float = 1) -> None:
        self._detailed.inc(amount)
        if self._seed is not None:
            self._seed.inc(amount)


@dataclass(frozen=True, slots=True)
class ClusterSample:
    """What the leader saw at its last look: the store's backlog and the live members."""

    due: int
    """Fires due and not yet claimed by a picker (the dispatch backlog)."""
    queued: int
    """Runs available and waiting for a worker (the queue depth)."""
    running: int
    oldest_due_age: float
    """Seconds since the oldest unclaimed due fire was due (0: none)."""
    members: Mapping[str, int] = field(default_factory=dict)
    """role -> live members, as the leader sees them."""
    queue_messages: int | None = None
    """Messages in the run queue's broker, waiting or in flight (None: no queue)."""
    skipped: Mapping[SkipReason, int] = field(default_factory=dict)
    """Skipped nominal fires so far, per reason (``JobStore.skip_counts``)."""


class ClusterView(Collector):
    """The leader's ``ClusterSample`` as gauges; nothing at all while ``sample`` is None
    (not leading), so a deposed leader's last numbers do not linger next to the new one's."""

    def __init__(self) -> None:
        self.sample: ClusterSample | None = None
        self.health: Mapping[str, bool] | None = None
        """backend -> whether the leader's last call to it answered (None: not leading)."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        if self.health is not None:
            up = GaugeMetricFamily(
                "backend_up",
                "1 if the leader's last call to this backend (store, coordination, dispatch,"
                " blob) answered, 0 if it failed",
                labels=["backend"],
            )
            for backend, ok in sorted(self.health.items()):
                up.add_metric([backend], 1.0 if ok else 0.0)
            yield up
        s = self.sample
        if s is None:
            return
        backlog = GaugeMetricFamily(
            "dispatch_backlog",
            "Leader's view of the store: fires due and unclaimed (due), runs waiting for a"
            " worker (queued), runs executing (running)",
            labels=["state"],
        )
        for state, value in (("due", s.due), ("queued", s.queued), ("running", s.running)):
            backlog.add_metric([state], value)
        yield backlog
        yield GaugeMetricFamily(
            "dispatch_oldest_due_age_seconds",
            "Seconds since the oldest unclaimed due fire was due (0: none)",
            value=s.oldest_due_age,
        )
        members = GaugeMetricFamily(
            "cluster_members_alive",
            "Live members by role, as the leader sees them",
            labels=["member_role"],
        )
        for role, count in sorted(s.members.items()):
            members.add_metric([role], count)
        yield members
        if s.queue_messages is not None:
            yield GaugeMetricFamily(
                "dispatch_queue_messages",
                "Messages in the run queue's broker (Redis, SQS), waiting or in flight",
                value=s.queue_messages,
            )
        skipped = CounterMetricFamily(
            "fires_skipped",
            "Nominal fires that got no run, by reason (overlap, paused, misfire,"
            " missed_deadline, end_reached); each fire's record is in its job's fire ledger",
            labels=["reason"],
        )
        for reason in SkipReason:
            skipped.add_metric([reason.value], s.skipped.get(reason, 0))
        yield skipped


_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_DURATION_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)


class Metrics:
    """All metrics of one node, in a registry of its own (so nodes and tests never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.merged: Callable[[], Iterable[str]] = tuple
        """The metric texts of this node's worker processes (``observability.exposition``)."""
        r = self.registry
        self.http_requests = Counter(
            "http_requests_total", "HTTP requests", ["method", "path", "status"], registry=r
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "path"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.jobs_created = Counter("jobs_created", "Jobs accepted", registry=r)
        self.jobs_scanned = Counter("jobs_scanned", "Due fires found by pickers", registry=r)
        self.jobs_enqueued = Counter(
            "jobs_enqueued",
            "Fires turned into runs handed to dispatch (pickers, api at insert)",
            registry=r,
        )
        self.enqueue_duration = Histogram(
            "sqs_enqueue_duration_seconds",
            "Time to hand runs to dispatch: a picker's claim, or an insert that fired its jobs"
            " (the seed's SQS publish latency)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.runs_finished = Counter(
            "runs_finished", "Attempts finished, by run status", ["status"], registry=r
        )
        self.jobs_executed = FinishedRuns(
            self.runs_finished,
            Counter(
                "jobs_executed", "Attempts executed, success or failed (the seed's)", ["status"],
                registry=r,
            ),
        )  # fmt: skip
        self.job_duration = Histogram(
            "job_execution_duration_seconds",
            "Time an attempt spent executing",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.fire_lag = Histogram(
            "job_fire_lag_seconds",
            "Delay from a run's scheduled time to its start",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.s3_operations = Counter(
            "s3_operations", "Blob store operations (the seed's name)", ["operation"], registry=r
        )
        for operation in ("upload", "download", "delete", "list"):  # services.blob_metrics
            self.s3_operations.labels(operation)
        self.runs_reaped = Counter(
            "runs_reaped", "Runs of lost workers ended (membership expired or lease expired)",
            registry=r,
        )  # fmt: skip
        self.submissions_moved = Counter(
            "submissions_moved",
            "Submission-log entries a writer took out of the log: stored (or dropped, counted"
            " in submissions_dropped too)",
            registry=r,
        )
        self.submissions_dropped = Counter(
            "submissions_dropped",
            "Submission-log entries the store refused for good (logged, acknowledged)",
            registry=r,
        )
        self.outcomes_unrecorded = Counter(
            "run_outcomes_unrecorded",
            "Outcomes the store refused: recorded as FAILED instead, or dropped",
            ["fate"],
            registry=r,
        )
        for fate in ("failed", "dropped"):
            self.outcomes_unrecorded.labels(fate)  # exported at 0, so dashboards find them
        self.user_limit_refusals = Counter(
            "user_limit_refusals",
            "Requests refused with 429 by a per-user limit (docs/limits.md), per limit: a"
            " submission (active_jobs) or a manual fire (fires_per_minute)",
            ["limit"],
            registry=r,
        )
        self.user_limit_deferrals = Counter(
            "user_limit_deferrals",
            "Due jobs a picker's claim found and left waiting because their user was out of"
            " fires for the minute (users known to be out are left out of the select)",
            ["limit"],
            registry=r,
        )
        for limit in (LIMIT_ACTIVE_JOBS, LIMIT_FIRES_PER_MINUTE):  # exported at 0
            self.user_limit_refusals.labels(limit)
        self.user_limit_deferrals.labels(LIMIT_FIRES_PER_MINUTE)
        # Cluster state (see the module docstring); roles bind the functions they know.
        self.leader = Gauge(
            "coordinator_leader", "1 while this coordinator holds the leader lease", registry=r
        )
        self.leader_epoch = Gauge(
            "coordinator_leader_epoch", "Leader epoch of this coordinator's term (0: not leading)",
            registry=r,
        )  # fmt: skip
        self.shards_owned = Gauge(
            "picker_shards_owned", "Shards this picker's current assignment gives it", registry=r
        )
        self.runs_held = Gauge(
            "worker_runs_held", "Runs this worker holds (claimed ahead or running)", registry=r
        )
        self.cluster = ClusterView()
        r.register(self.cluster)


def metrics_text(metrics: Metrics) -> bytes:
    """The node's ``/metrics`` answer: its registry and its worker processes' texts."""
    return exposition(metrics.registry, metrics.merged())
