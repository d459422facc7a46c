"""Prometheus metrics of one app, in its own registry (no module globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)


class Metrics:
    """The collectors the request path updates; label children are resolved once, not per request."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.overhead = Histogram(
            "sluice_overhead_seconds", "Time spent in the gateway per request, upstream time excluded",
            ["operation"], buckets=OVERHEAD_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge("sluice_in_flight_requests", "Requests being handled now", registry=self.registry)
        self.overhead_by_operation = {op: self.overhead.labels(op) for op in ("chat", "completions", "embeddings")}

    def render(self) -> bytes:
        """The Prometheus text exposition of every collector."""
        return generate_latest(self.registry)
