"""A dead collector costs requests nothing: observing packs a few µs per exchange on the event loop, shipping is
one pipe write per 50 ms, and shutdown is bounded even when the exporter cannot export."""

from __future__ import annotations

import os
import time

import anyio
import pytest

from sluice.config import parse_config
from sluice.settings import Settings
from sluice.telemetry.observers import worker_settings
from sluice.telemetry.tracing import TraceExport, TracingObserver
from tests.servers import free_port
from tests.telemetry_support import CHAT_BODY, TOOL_STREAM_BODY, exchange

pytestmark = pytest.mark.anyio
COUNT = 2000


async def test_a_dead_collector_does_not_slow_requests() -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    observer = TracingObserver({"kind": "otlp", "endpoint": dead, "project": "dead", "priority": 10}, {},
                               stop_seconds=3)
    await observer.start()
    items = [exchange("chat", TOOL_STREAM_BODY if index % 2 else CHAT_BODY) for index in range(COUNT)]

    cpu = time.process_time()
    for item in items:
        observer.observe(item)  # packs each record
    assert observer.pending == COUNT
    observer.flush()  # what the background task does every 50 ms: hand the packed records to the pipe
    shipping = (time.process_time() - cpu) / COUNT
    assert observer.pending == 0

    stopping = time.perf_counter()
    await observer.aclose()
    stopped_in = time.perf_counter() - stopping

    print(f"observe and ship {shipping * 1e6:.1f} µs CPU per exchange, stop {stopped_in:.1f} s")
    assert shipping < 60e-6  # ~3-6 µs measured here; the exporter process does the ~300 µs of span work
    assert stopped_in < 3 + 2
    assert observer.dropped == 0


async def test_unsampled_and_untraced_exchanges_are_not_shipped() -> None:
    observer = TracingObserver({"kind": "otlp", "endpoint": "http://127.0.0.1:9", "project": "x"}, {})
    observer.observe(exchange("chat", CHAT_BODY, traced=False))
    observer.observe(exchange("chat", CHAT_BODY, traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"))
    assert observer.pending == 0


@pytest.mark.parametrize(("telemetry", "policy", "nice"), [
    ("{}", "idle", 0), ("{exporter_priority: 7}", "other", 7), ("{exporter_priority: 7, exporter_nice: 3}", "other", 3),
])
async def test_the_exporter_runs_at_the_configured_priority(telemetry: str, policy: str, nice: int) -> None:
    """SCHED_IDLE by default (it never delays a request); a nice value when asked, `exporter_nice` winning."""
    config = parse_config(f"providers:\n  m: {{type: mock}}\ntelemetry: {telemetry}\n", "t.yaml")
    export = TraceExport("otlp", f"http://127.0.0.1:{free_port()}")
    observer = TracingObserver(worker_settings(config, Settings(), export, "test"), {}, stop_seconds=3)
    await observer.start()
    try:
        pid = observer.exporter_pid
        assert pid is not None
        wanted = (os.SCHED_IDLE if policy == "idle" else os.SCHED_OTHER, os.getpriority(os.PRIO_PROCESS, 0) + nice)
        deadline = time.monotonic() + 10
        while (os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid)) != wanted:
            assert time.monotonic() < deadline, "the exporter never took its priority"
            await anyio.sleep(0.05)
    finally:
        await observer.aclose()
