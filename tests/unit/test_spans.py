"""Spans built in-process with the real SDK and an in-memory exporter: exact ids, times, kinds; the record format
the exporter process reads."""

from __future__ import annotations

import io

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sluice.exchange import Exchange
from sluice.frame_pipe import frame, read_frames
from sluice.telemetry.span_worker import exchange_of, traces_url
from sluice.telemetry.spans import FIRST_TOKEN_EVENT, PresetIds, SpanOptions, SpanWriter
from sluice.telemetry.tracing import record_of, trace_export
from tests.telemetry_support import CALLER_SPAN, CALLER_TRACE, CALLER_TRACEPARENT, CHAT_BODY, TOOL_STREAM_BODY, exchange


def write(item: Exchange, identity: dict[str, str] | None = None, **options: object) -> dict[str, object]:
    exporter = InMemorySpanExporter()
    ids = PresetIds()
    provider = TracerProvider(id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    SpanWriter(provider, ids, SpanOptions(provider_types={"mock": "azure"}, **options)).write(
        item, identity or {})
    return {span.name: span for span in exporter.get_finished_spans()}


def test_spans_carry_the_ids_the_request_path_chose() -> None:
    item = exchange("chat", CHAT_BODY, traceparent=CALLER_TRACEPARENT)
    assert item.trace is not None
    spans = write(item, {"session.id": "s1"})
    server, llm = spans["POST /v1/chat/completions"], spans["chat mock-1"]
    assert format(server.context.trace_id, "032x") == CALLER_TRACE == format(llm.context.trace_id, "032x")
    assert format(server.parent.span_id, "016x") == CALLER_SPAN
    assert format(server.context.span_id, "016x") == item.trace.server_span_id
    assert format(llm.context.span_id, "016x") == item.trace.upstream_span_id
    assert llm.parent.span_id == server.context.span_id
    assert (server.kind, llm.kind) == (SpanKind.SERVER, SpanKind.CLIENT)
    assert server.start_time == int(item.started_at * 1e9)
    assert llm.start_time == server.start_time + int(0.005 * 1e9) and llm.end_time == llm.start_time + int(0.03 * 1e9)
    assert server.end_time == server.start_time + int(0.04 * 1e9)
    assert (llm.attributes["llm.provider"], llm.attributes["llm.system"]) == ("azure", "openai")
    assert llm.attributes["session.id"] == "s1"


def test_a_new_trace_a_stream_event_and_an_error() -> None:
    item = exchange("chat", TOOL_STREAM_BODY, status=200, error="upstream stream broke")
    spans = write(item)
    server, llm = spans["POST /v1/chat/completions"], spans["chat mock-1"]
    assert server.parent is None and item.trace is not None
    assert format(server.context.trace_id, "032x") == item.trace.trace_id
    assert [event.name for event in llm.events] == [FIRST_TOKEN_EVENT]
    assert llm.events[0].timestamp == server.start_time + int(0.012 * 1e9)
    assert llm.end_time == server.end_time  # a stream's upstream span lasts until the last chunk
    assert llm.status.status_code is StatusCode.ERROR and server.status.status_code is StatusCode.UNSET


def test_no_upstream_call_means_no_child_span() -> None:
    spans = write(exchange("chat", CHAT_BODY, status=401, upstream_offset=None, error="bad key"))
    assert list(spans) == ["POST /v1/chat/completions"]


def test_records_cross_the_pipe_intact() -> None:
    item = exchange("chat", TOOL_STREAM_BODY, headers=[(b"X-User-Id", b"ada")])
    record = record_of(item, {b"x-user-id": "user.id"})
    stream = io.BytesIO(frame(record) + b"\x00\x00")  # a torn last frame is ignored
    (read,) = list(read_frames(stream))
    copy, identity = exchange_of(read)
    assert identity == {"user.id": "ada"}
    assert copy.trace == item.trace and copy.chunks == item.chunks and copy.request_body == item.request_body
    assert copy.request_headers == ()  # no header (and so no key) leaves the gateway process


def test_where_spans_go() -> None:
    assert trace_export(None, None) is None
    assert trace_export("http://phoenix:6006", "http://otel:4318").kind == "phoenix"
    assert trace_export(None, "http://otel:4318").kind == "otlp"
    assert traces_url("http://phoenix:6006/") == "http://phoenix:6006/v1/traces"
    assert traces_url("http://phoenix:6006/v1/traces") == "http://phoenix:6006/v1/traces"
