"""The span exporter process against an OTLP/HTTP collector on loopback that records what it is sent: the path,
the headers `PHOENIX_API_KEY` and `OTEL_EXPORTER_OTLP_HEADERS` give, protobuf bodies the official classes
decode, gzip when asked, a batch a busy collector refused once (503) sent again, and the sender's batching: full
batches at once, the rest after the delay, and `add` waiting while the queue is full."""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sluice.telemetry import otlp_wire
from sluice.telemetry.otlp_sender import OtlpSender
from sluice.telemetry.tracing import TracingObserver
from tests.servers import serve
from tests.telemetry_support import CHAT_BODY, Collector, exchange

pytestmark = pytest.mark.anyio


async def export(collector: Collector, kind: str, headers: dict[str, Any], count: int, gzip: bool = False) -> None:
    with serve(collector.app) as url:
        observer = TracingObserver({"kind": kind, "endpoint": url, "project": "proj-1", "version": "t",
                                    "provider_types": {"mock": "openai"}, "headers": headers, "gzip": gzip}, {})
        await observer.start()
        for _ in range(count):
            observer.observe(exchange("chat", CHAT_BODY))
        await observer.aclose()
        assert observer.dropped == 0


async def test_phoenix_gets_its_api_key_and_every_span() -> None:
    collector = Collector()
    await export(collector, "phoenix", {"api_key": "secret-1", "phoenix": "x-team=ml%20ops"}, 3)
    assert collector.seen
    spans = []
    for path, headers, body in collector.seen:
        assert path == "/v1/traces"
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["authorization"] == "Bearer secret-1" and headers["x-team"] == "ml ops"
        (resource_spans,) = ExportTraceServiceRequest.FromString(body).resource_spans
        resource = {item.key: item.value.string_value for item in resource_spans.resource.attributes}
        assert resource["openinference.project.name"] == "proj-1" and resource["service.name"] == "sluice"
        spans += [span for scope in resource_spans.scope_spans for span in scope.spans]
    assert len(spans) == 6
    assert sorted({span.name for span in spans}) == ["POST /v1/chat/completions", "chat mock-1"]


async def test_a_refused_batch_is_sent_again() -> None:
    collector = Collector(refuse=1)
    await export(collector, "otlp", {"otlp": "x-a=1", "otlp_traces": "x-b=2"}, 2)
    assert len(collector.seen) == 2
    (_, first_headers, first), (_, headers, second) = collector.seen
    assert first == second and headers["x-a"] == "1" and headers["x-b"] == "2"
    assert "authorization" not in headers
    (resource_spans,) = ExportTraceServiceRequest.FromString(second).resource_spans
    assert sum(len(scope.spans) for scope in resource_spans.scope_spans) == 4


async def test_batches_are_gzipped_when_asked() -> None:
    collector = Collector()
    await export(collector, "otlp", {}, 2, gzip=True)
    (_, headers, body), = collector.seen
    assert headers["content-encoding"] == "gzip"
    (resource_spans,) = ExportTraceServiceRequest.FromString(gzip.decompress(body)).resource_spans
    assert sum(len(scope.spans) for scope in resource_spans.scope_spans) == 4


def _span(number: int) -> bytes:
    return otlp_wire.span(trace_id=bytes(16), span_id=number.to_bytes(8, "big"), parent_span_id=None,
                          parent_is_remote=False, name=f"span {number}", kind=otlp_wire.SPAN_KIND_SERVER, start=1,
                          end=2, attributes_={})


def _batch_sizes(collector: Collector) -> list[int]:
    found = []
    for _, _, body in collector.seen:
        (resource_spans,) = ExportTraceServiceRequest.FromString(body).resource_spans
        found.append(sum(len(scope.spans) for scope in resource_spans.scope_spans))
    return found


def test_full_batches_go_at_once_and_the_rest_after_the_delay() -> None:
    collector = Collector()
    with serve(collector.app) as url:
        sender = OtlpSender(f"{url}/v1/traces", {}, {"service.name": "t"}, batch_size=4, delay=1.5)
        started = time.monotonic()
        for number in range(10):
            sender.add(_span(number))
        while len(collector.seen) < 2 and time.monotonic() - started < 5:
            time.sleep(0.01)
        assert _batch_sizes(collector) == [4, 4]  # two full batches at once; two spans wait for the delay
        assert time.monotonic() - started < 1.0
        while len(collector.seen) < 3 and time.monotonic() - started < 5:
            time.sleep(0.01)
        assert _batch_sizes(collector) == [4, 4, 2] and time.monotonic() - started >= 1.4
        sender.add(_span(10))
        sender.close()  # sends what waits at once
        assert _batch_sizes(collector) == [4, 4, 2, 1] and time.monotonic() - started < 3.0


def test_add_waits_while_the_queue_is_full() -> None:
    collector = Collector()
    with serve(collector.app) as url:
        sender = OtlpSender(f"{url}/v1/traces", {}, {"service.name": "t"}, batch_size=100, delay=0.5, max_queued=3)
        started = time.monotonic()
        for number in range(4):  # the fourth waits until the delay sends the first three
            sender.add(_span(number))
        waited = time.monotonic() - started
        sender.close()
        assert waited >= 0.4 and _batch_sizes(collector) == [3, 1]


async def test_the_exporter_runs_idle_in_the_gateways_session_and_its_own_process_group() -> None:
    collector = Collector()
    with serve(collector.app) as url:
        observer = TracingObserver({"kind": "otlp", "endpoint": url, "project": "p", "version": "t",
                                    "provider_types": {}, "headers": {}, "priority": "idle"}, {})
        await observer.start()
        try:
            pid = observer.exporter_pid
            assert pid is not None
            await _until(lambda: os.getpgid(pid) == pid)  # `detach`, the first thing it does
            # A signal to the gateway's process group does not reach it; the gateway's session is its scheduling
            # group (autogroup), so SCHED_IDLE yields to the gateway rather than to a group of its own.
            assert os.getpgid(pid) == pid and os.getsid(pid) == os.getsid(0)
            await _until(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE)
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        finally:
            await observer.aclose()


async def _until(check: Callable[[], bool], within: float = 10.0) -> None:
    for _ in range(int(within / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
