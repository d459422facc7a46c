"""Waiting for a gateway's helpers: the request log written out, the process tree idle, and the counters that say so."""

from __future__ import annotations

import http.client
import time

from prometheus_client.parser import text_string_to_metric_families

import procs
from targets import SLUICE_KEY

_LOG_COUNTERS = {f"sluice_request_log_{name}_total": f"log_{name}"
                 for name in ("spilled", "replayed", "written", "batches")}


def drained(port: int, within: float = 300.0) -> float:
    """Seconds until the request log holds nothing unwritten: nothing buffered (`sluice_request_log_buffered` 0)
    and every spilled entry replayed; 0 if it is off. With the writer process at a lower priority the runs leave a
    backlog, and past its buffers the gateway spills: writing all of it is part of the log's cost."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        found = scrape_counters(port)
        if not found.get("log_buffered") and found.get("log_replayed", 0.0) >= found.get("log_spilled", 0.0):
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"the request log still held entries after {within:.0f} s")


def settled(proc: procs.Proc, within: float = 120.0) -> float:
    """Seconds until the target's process tree is idle (under 2 % of a core over half a second): its helpers at
    SCHED_IDLE (the span exporter, the log writer) work off what they were handed during the runs once the core is
    free, and that work is part of the feature's cost. (The exporter reports no backlog, unlike the log.)"""
    started = time.monotonic()
    before = proc.cpu_seconds()
    while time.monotonic() - started < within:
        time.sleep(0.5)
        now = proc.cpu_seconds()
        if now - before < 0.01:
            return time.monotonic() - started
        before = now
    raise RuntimeError(f"{proc.name} was still busy {within:.0f} s after the runs")


def scrape_counters(port: int) -> dict[str, float]:
    """From a Sluice's /metrics: chat requests answered, exchanges the telemetry sinks had to drop, and the request
    log's counters (`log_written`, `log_batches`, `log_spilled`, `log_replayed`, `log_buffered`)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {SLUICE_KEY}"})
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    found = {"answered": 0.0, "spans_dropped": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sluice_requests_total":
                found["answered"] += sample.value
            elif sample.name == "sluice_telemetry_dropped_total" and sample.labels.get("sink") == "tracing":
                found["spans_dropped"] += sample.value
            elif sample.name in _LOG_COUNTERS:
                name = _LOG_COUNTERS[sample.name]
                found[name] = found.get(name, 0.0) + sample.value
            elif sample.name == "sluice_request_log_buffered":
                found["log_buffered"] = found.get("log_buffered", 0.0) + sample.value
    return found
