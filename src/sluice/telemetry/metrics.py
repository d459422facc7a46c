"""Prometheus metrics of one app, in its own registry (no module globals).

With several worker processes, `PROMETHEUS_MULTIPROC_DIR` must name an empty directory before any worker
imports prometheus_client (`sluice serve` sees to it); each process then writes its values there and a scrape,
whichever worker answers it, adds up every process's files (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from sluice.serve.reloads import counts_file_from_env, read_counts
from sluice.telemetry.tally import HistogramTally

OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def forget_dead_workers(multiprocess_dir: str) -> list[int]:
    """Drop the live gauges (in-flight requests, breaker state) of workers that died without `Metrics.close`
    (killed, crashed; granian then starts a new one): they would count in every scrape for good. Counters and
    histograms stay, as for a worker that stopped cleanly. Returns the pids forgotten."""
    pids = set()
    for name in os.listdir(multiprocess_dir):
        match = _LIVE_GAUGE_FILE.fullmatch(name)
        if match is not None:
            pids.add(int(match[1]))
    forgotten = []
    for pid in sorted(pids):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, multiprocess_dir)  # type: ignore[no-untyped-call]
            forgotten.append(pid)
        except PermissionError:  # alive, another user's
            pass
    return forgotten


class ConfigReloads(Collector):
    """`sluice_config_reloads_total{result}`: the supervisor counts the reloads (serve/supervisor.py) in a file;
    every worker shows that file's counts, whoever started when."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> list[CounterMetricFamily]:
        counts = read_counts(self.path)
        family = CounterMetricFamily("sluice_config_reloads", "Config reloads (SIGHUP, `sluice reload`): success, "
                                     "or failure (refused or failed; the running config stayed)", labels=["result"])
        family.add_metric(["success"], counts.success)
        family.add_metric(["failure"], counts.failure)
        return [family]


class Metrics:
    """The collectors the request path updates; label children are resolved once, not per request."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None and values.ValueClass is values.MutexValue:
            # prometheus_client picks its value class when first imported; a worker forked from a parent that
            # imported it before PROMETHEUS_MULTIPROC_DIR was set must pick again, before any collector exists.
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        if multiprocess_dir is not None:
            forget_dead_workers(multiprocess_dir)
        self.before_render: list[Callable[[], None]] = []
        """Called before each scrape, so what observers still hold in their queues is counted."""
        self.requests_in_flight: Callable[[], int] | None = None
        """How many requests are being handled now (the gateway's count), shown by `in_flight` at each `flush`."""
        self._in_flight_shown = 0
        self.overhead = Histogram(
            "sluice_overhead_seconds", "Time spent in the gateway per request, upstream time excluded",
            ["operation"], buckets=OVERHEAD_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge("sluice_in_flight_requests", "Requests being handled now", registry=self.registry,
                               multiprocess_mode="livesum")
        operations = ("chat", "completions", "embeddings", "passthrough")
        self.overhead_by_operation = {op: HistogramTally(self.overhead.labels(op)) for op in operations}
        self.requests = Counter("sluice_requests", "Requests answered", ["route", "provider", "model", "status"],
                                registry=self.registry)
        self.request_duration = Histogram(
            "sluice_request_duration_seconds", "Time from a request's arrival to its last byte",
            ["route", "provider", "model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.upstream_duration = Histogram(
            "sluice_upstream_duration_seconds", "Time spent waiting on the upstream", ["provider", "model"],
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.time_to_first_token = Histogram(
            "sluice_time_to_first_token_seconds", "Time from a streamed request's arrival to its first chunk",
            ["provider", "model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tokens = Counter("sluice_tokens", "Tokens the upstreams reported", ["provider", "model", "direction"],
                              registry=self.registry)
        self.cost = Counter("sluice_cost_usd", "Estimated spend in USD (the price table × reported tokens)",
                            ["provider", "model"], registry=self.registry)
        self.price_missing = Counter("sluice_price_missing", "Requests that reported usage for a model with no price",
                                     ["model"], registry=self.registry)
        self.budget_rejections = Counter("sluice_budget_rejections", "Requests refused because a key's budget "
                                         "was spent (429 insufficient_quota)", registry=self.registry)
        self.budget_failures = Counter("sluice_budget_failures", "Spend ledger database failures (charges are "
                                       "kept and retried)", ["operation"], registry=self.registry)
        self.budget_unflushed = Gauge("sluice_budget_unflushed_usd", "Spend charged in memory, not yet in the "
                                      "database", registry=self.registry, multiprocess_mode="livesum")
        self.upstream_errors = Counter("sluice_upstream_errors", "Failed upstream calls", ["provider", "kind"],
                                       registry=self.registry)
        self.telemetry_dropped = Counter("sluice_telemetry_dropped", "Exchanges an observer had to drop",
                                         ["sink"], registry=self.registry)
        self.limiter_failures = Counter(
            "sluice_limiter_failures", "Rate limit backend (Redis) calls that failed or timed out", ["operation"],
            registry=self.registry)
        self.rate_limited = Counter("sluice_rate_limited", "Requests refused (429) by a rate or concurrency limit",
                                    ["subject"], registry=self.registry)
        self.breaker_state = Gauge(
            "sluice_circuit_breaker_state", "Circuit breaker of each deployment (`deployment` empty: the provider's "
            "passthrough): 0 closed, 1 half-open, 2 open (the highest of the live workers)", ["provider", "deployment"],
            registry=self.registry, multiprocess_mode="livemax")
        self.breaker_transitions = Counter("sluice_circuit_breaker_transitions", "Circuit breaker state changes",
                                           ["provider", "deployment", "to"], registry=self.registry)
        self.fallbacks = Counter("sluice_fallbacks", "Requests sent to a fallback model after every deployment of "
                                 "the model asked for failed", ["from", "to", "reason"], registry=self.registry)
        self.failovers = Counter("sluice_failovers", "Calls sent to another deployment of the same model after one "
                                 "failed", ["model", "deployment", "reason"], registry=self.registry)
        self.upstream_retries = Counter("sluice_upstream_retries", "Upstream calls tried again after a failure "
                                        "before any reply byte reached the client", ["provider", "reason"],
                                        registry=self.registry)
        self.cache_requests = Counter("sluice_cache_requests", "Requests for a model (or, as `route:<path>`, a "
                                      "service route) with a response cache, by result: hit, miss, bypass or "
                                      "revalidated", ["model", "result"],
                                      registry=self.registry)
        self.cache_failures = Counter("sluice_cache_failures", "Response cache backend (Redis) calls that failed or "
                                      "timed out (a lookup is then a miss)", ["operation"], registry=self.registry)
        self.deployment_healthy = Gauge(
            "sluice_deployment_healthy", "1 while a deployment passes its active health checks (or has none), 0 "
            "while they take it out (the lowest of the live workers)", ["model", "deployment"],
            registry=self.registry, multiprocess_mode="livemin")
        self.health_check_status = Gauge(
            "sluice_health_check_status", "1 while an active health check passes (after its thresholds), 0 while "
            "it fails (the lowest of the live workers); a deployment's check has provider and path, a service "
            "instance's service, instance (its URL) and path", ["provider", "path", "service", "instance"],
            registry=self.registry,
            multiprocess_mode="livemin")
        self.health_checks = Counter(
            "sluice_health_checks", "Active health checks run, by result: healthy, unexpected_status, timeout, "
            "unreachable", ["provider", "path", "result"], registry=self.registry)
        reloads_path = counts_file_from_env()
        self.config_reloads = None if reloads_path is None else ConfigReloads(reloads_path)
        if self.config_reloads is not None:
            self.registry.register(self.config_reloads)

    def close(self) -> None:
        """At a worker's exit: its live gauges (in-flight requests) stop counting in the other workers' scrapes."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def flush(self) -> None:
        """Show what the request path counted in this process since the last flush: the overhead tallies and the
        requests in flight (the metrics observer calls it every `FLUSH_SECONDS`; a scrape first)."""
        for tally in self.overhead_by_operation.values():
            tally.apply()
        if self.requests_in_flight is not None:
            now = self.requests_in_flight()
            if now != self._in_flight_shown:
                self._in_flight_shown = now
                self.in_flight.set(now)

    def render(self) -> bytes:
        """The Prometheus text exposition of every collector (of every worker, in multiprocess mode)."""
        self.flush()
        for hook in self.before_render:
            hook()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        if self.config_reloads is not None:
            registry.register(self.config_reloads)
        return generate_latest(registry)


def prepare_multiprocess_dir(given: str | None) -> str:
    """An empty directory for multiprocess metrics: `given` emptied of old values, or a new temporary one."""
    if given is None:
        return tempfile.mkdtemp(prefix="sluice-metrics-")
    path = Path(given)
    if path.is_dir():
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path.mkdir(parents=True)
    return str(path)
