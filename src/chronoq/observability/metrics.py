"""Prometheus metrics, with the seed's names. No label carries unbounded values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_DURATION_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)


class Metrics:
    """All metrics of one node, in a registry of its own (so nodes and tests never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        self.jobs_enqueued = Counter("jobs_enqueued", "Runs handed to dispatch", registry=r)
        self.jobs_executed = Counter(
            "jobs_executed", "Attempts finished, by run status", ["status"], registry=r
        )
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
        self.runs_reaped = Counter(
            "runs_reaped", "Runs of lost workers ended (membership expired or lease expired)",
            registry=r,
        )  # fmt: skip
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
