"""Timings in batches: into a histogram child as ``observe`` would put them one by one, and
kept in a tally before the child exists."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from exporter.metrics.capture_path import OPERATION_BUCKETS
from exporter.metrics.histogram_batch import BulkObserver, TimingTally


def samples(registry: CollectorRegistry, name: str) -> list[tuple[str, dict[str, str], float]]:
    """A histogram's samples without its name and ``_created``, to compare two of them."""
    return [
        (s.name.removeprefix(name), s.labels, s.value)
        for m in registry.collect()
        if m.name == name
        for s in m.samples
        if not s.name.endswith("_created")
    ]


@pytest.mark.parametrize("batch", [[0.0], [-1.0, 0.001, 0.0011, 0.5, 30.0, 31.0, 1e9, 0.001]])
def test_timings_applied_in_a_batch_land_where_observe_puts_them(batch):
    """A batch incremented per bucket gives the same histogram as ``observe`` one by one
    (bounds inclusive, negatives as 0); a child of another make keeps its own observe."""
    registry = CollectorRegistry()
    reference = Histogram("ref", "x", buckets=OPERATION_BUCKETS, registry=registry)
    batched = Histogram("batched", "x", buckets=OPERATION_BUCKETS, registry=registry)
    for seconds in batch:
        reference.observe(max(seconds, 0.0))
    BulkObserver(batched)(batch)

    assert samples(registry, "batched") == samples(registry, "ref")

    seen: list[float] = []
    other = type("OtherChild", (), {"observe": lambda self, v: seen.append(v)})()
    BulkObserver(other)(batch)
    assert seen == [max(v, 0.0) for v in batch]


def test_a_tally_adds_to_a_child_as_observe_would():
    """Timings folded before the families existed: the same buckets and sum as observe
    one by one; a child of another make gets each bucket's timings at their mean (in that
    bucket: buckets and sum still right)."""
    values = [-1.0, 0.0, 0.001, 0.0011, 0.5, 0.5, 30.0, 31.0, 1e9, 0.25]
    tally = TimingTally(OPERATION_BUCKETS)
    tally.add(values)
    registry = CollectorRegistry()
    reference = Histogram("ref", "x", buckets=OPERATION_BUCKETS, registry=registry)
    added = Histogram("added", "x", buckets=OPERATION_BUCKETS, registry=registry)
    for seconds in values:
        reference.observe(max(seconds, 0.0))
    BulkObserver(added).add(tally)

    assert samples(registry, "added") == samples(registry, "ref")

    seen: list[float] = []
    other = type("OtherChild", (), {"observe": lambda self, v: seen.append(v)})()
    BulkObserver(other).add(tally)
    checked = Histogram("checked", "x", buckets=OPERATION_BUCKETS, registry=registry)
    for seconds in seen:
        checked.observe(seconds)
    assert len(seen) == len(values)
    assert [v for n, _, v in samples(registry, "checked") if n == "_bucket"] == [
        v for n, _, v in samples(registry, "ref") if n == "_bucket"
    ]
    assert sum(seen) == pytest.approx(sum(max(v, 0.0) for v in values))
