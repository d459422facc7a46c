"""A histogram tally (telemetry/tally.py) applied gives the histogram exactly what observing each amount gives."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from sluice.telemetry.metrics import LATENCY_BUCKETS, OVERHEAD_BUCKETS
from sluice.telemetry.tally import PENDING_LIMIT, HistogramTally

AMOUNTS = st.floats(min_value=0.0, max_value=400.0) | st.sampled_from([*LATENCY_BUCKETS, *OVERHEAD_BUCKETS, math.inf])


def histogram(buckets: tuple[float, ...]) -> tuple[CollectorRegistry, Histogram]:
    """A histogram with one child, `route="/a"`."""
    registry = CollectorRegistry()
    made = Histogram("h", "h", ["route"], buckets=buckets, registry=registry)
    return registry, made.labels("/a")


def rendered(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], str]]:
    """Every sample but the child's creation time; NaN as a string, to compare equal."""
    return [(sample.name, sample.labels, repr(sample.value)) for family in registry.collect()
            for sample in family.samples if not sample.name.endswith("_created")]


@given(st.lists(st.lists(AMOUNTS, max_size=40), max_size=4), st.sampled_from([LATENCY_BUCKETS, OVERHEAD_BUCKETS]))
def test_applied_tallies_render_as_observing_each_amount(batches: list[list[float]],
                                                        buckets: tuple[float, ...]) -> None:
    direct_registry, direct = histogram(buckets)
    tallied_registry, tallied = histogram(buckets)
    tally = HistogramTally(tallied)
    for batch in batches:
        for amount in batch:
            direct.observe(amount)
            tally.observe(amount)
        tally.apply()
        assert rendered(tallied_registry) == rendered(direct_registry)


def test_nan_counts_in_no_bucket_as_observe() -> None:
    direct_registry, direct = histogram(LATENCY_BUCKETS)
    tallied_registry, tallied = histogram(LATENCY_BUCKETS)
    tally = HistogramTally(tallied)
    for amount in (0.2, math.nan, 3.0):
        direct.observe(amount)
        tally.observe(amount)
    tally.apply()
    assert rendered(tallied_registry) == rendered(direct_registry)


def test_a_tally_never_holds_more_than_its_limit() -> None:
    _, tallied = histogram(LATENCY_BUCKETS)
    tally = HistogramTally(tallied)
    for _ in range(PENDING_LIMIT + 3):
        tally.observe(0.01)
    assert len(tally.pending) == 3
    assert tallied._sum.get() > 0
