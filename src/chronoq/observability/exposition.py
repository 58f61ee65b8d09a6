"""One ``/metrics`` answer for a node whose workers run in child processes.

Each worker process writes its registry's text to a file every second
(``runtime.worker_child``); the parent's answer is its own registry merged with
those texts, family by family: samples with the same name and labels are added —
counters, histogram buckets, sums and counts, and gauges, each of which one process
alone sets (the others export 0). A child's ``_created`` timestamps are left out:
the parent's family already carries its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

_CREATED_OF = ("counter", "histogram", "summary")


def exposition(registry: CollectorRegistry, texts: Iterable[str] = ()) -> bytes:
    """The Prometheus text of ``registry`` with every text of ``texts`` merged in."""
    texts = list(texts)
    if not texts:
        return generate_latest(registry)
    families: dict[str, Metric] = {family.name: family for family in registry.collect()}
    for text in texts:
        for family in text_string_to_metric_families(text):
            _merge(families, family)
    return generate_latest(_Collected(families.values()))


def _merge(families: dict[str, Metric], family: Metric) -> None:
    base = families.get(family.name.removesuffix("_created"))
    if family.name.endswith("_created") and base is not None and base.type in _CREATED_OF:
        return
    mine = families.get(family.name)
    if mine is None:
        families[family.name] = family
        return
    where = {(s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(mine.samples)}
    for sample in family.samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        at = where.get(key)
        if at is None:
            where[key] = len(mine.samples)
            mine.samples.append(sample)
        elif not sample.name.endswith("_created"):
            old = mine.samples[at]
            mine.samples[at] = old._replace(value=old.value + sample.value)


class _Collected:
    """What ``generate_latest`` needs of a registry: the families to write."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)
