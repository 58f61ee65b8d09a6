"""``observability.exposition``: a node's /metrics with its worker processes' texts merged."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chronoq.observability.exposition import exposition
from chronoq.observability.metrics import Metrics, metrics_text


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in found, f"sample {key} written twice"
            found[key] = s.value
    return found


def test_without_worker_processes_it_is_the_registry_alone() -> None:
    parent = Metrics()
    parent.jobs_created.inc(3)
    assert exposition(parent.registry) == generate_latest(parent.registry)
    assert metrics_text(parent) == generate_latest(parent.registry)


def test_samples_of_the_same_name_and_labels_add_up_and_each_family_is_written_once() -> None:
    parent, one, two = Metrics(), Metrics(), Metrics()
    parent.jobs_created.inc(5)  # the api's
    parent.http_requests.labels("POST", "/submit", "201").inc(5)
    for worker, done in ((one, 2), (two, 3)):
        worker.jobs_executed.labels("COMPLETED").inc(done)
        worker.runs_held.set(done)
        worker.job_duration.observe(0.2)
    texts = [generate_latest(w.registry).decode() for w in (one, two)]
    parent.merged = lambda: texts
    merged = samples(metrics_text(parent))
    assert merged[("jobs_created_total", ())] == 5
    assert (
        merged[
            ("http_requests_total", (("method", "POST"), ("path", "/submit"), ("status", "201")))
        ]
        == 5
    )
    assert merged[("runs_finished_total", (("status", "COMPLETED"),))] == 5
    assert merged[("jobs_executed_total", (("status", "success"),))] == 5
    assert merged[("worker_runs_held", ())] == 5
    assert merged[("job_execution_duration_seconds_count", ())] == 2
    assert merged[("job_execution_duration_seconds_bucket", (("le", "0.5"),))] == 2
    assert merged[("job_execution_duration_seconds_bucket", (("le", "0.1"),))] == 0
    # the parent's own creation timestamps, not a sum of three
    created = merged[("jobs_created_created", ())]
    assert created == samples(generate_latest(parent.registry))[("jobs_created_created", ())]


def test_a_family_only_a_child_has_is_added() -> None:
    parent = Metrics()
    text = "# HELP extra_total An extra counter\n# TYPE extra_total counter\nextra_total 7.0\n"
    merged = samples(exposition(parent.registry, [text]))
    assert merged[("extra_total", ())] == 7
