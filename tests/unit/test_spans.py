"""Spans built in-process as OTLP protobuf bytes and read back with the official generated classes: exact ids,
times, kinds, attributes, events and status; the record format the exporter process reads."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from sluice.config import parse_config
from sluice.exchange import Exchange
from sluice.serve.frame_pipe import frame, read_frames
from sluice.settings import Settings
from sluice.telemetry import otlp_wire
from sluice.telemetry.observers import worker_settings
from sluice.telemetry.span_worker import exchange_of, export_headers, traces_url
from sluice.telemetry.spans import FIRST_TOKEN_EVENT, SpanOptions, SpanWriter
from sluice.telemetry.tracing import TraceExport, record_of, trace_export
from tests.telemetry_support import CALLER_SPAN, CALLER_TRACE, CALLER_TRACEPARENT, CHAT_BODY, TOOL_STREAM_BODY, exchange


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes_of(values: Any) -> dict[str, Any]:
    return {item.key: value_of(item.value) for item in values}


def decoded(spans: list[bytes], resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(otlp_wire.request(resource or {"service.name": "sluice"}, "sluice",
                                                                  spans))


def write(item: Exchange, identity: dict[str, str] | None = None, **options: object) -> dict[str, Span]:
    emitted: list[bytes] = []
    SpanWriter(emitted.append, SpanOptions(provider_types={"mock": "azure"}, **options)).write(item, identity or {})
    (resource_spans,) = decoded(emitted).resource_spans
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "sluice"
    return {span.name: span for span in scope_spans.spans}


def test_spans_carry_the_ids_the_request_path_chose() -> None:
    item = exchange("chat", CHAT_BODY, traceparent=CALLER_TRACEPARENT)
    assert item.trace is not None
    spans = write(item, {"session.id": "s1"})
    server, llm = spans["POST /v1/chat/completions"], spans["chat mock-1"]
    assert server.trace_id.hex() == CALLER_TRACE == llm.trace_id.hex()
    assert server.parent_span_id.hex() == CALLER_SPAN
    assert server.span_id.hex() == item.trace.server_span_id
    assert llm.span_id.hex() == item.trace.upstream_span_id
    assert llm.parent_span_id == server.span_id
    assert (server.kind, llm.kind) == (Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT)
    assert server.flags == 0x301 and llm.flags == 0x101  # sampled; the caller's parent is remote, ours is not
    assert server.start_time_unix_nano == int(item.started_at * 1e9)
    assert llm.start_time_unix_nano == server.start_time_unix_nano + int(0.005 * 1e9)
    assert llm.end_time_unix_nano == llm.start_time_unix_nano + int(0.03 * 1e9)
    assert server.end_time_unix_nano == server.start_time_unix_nano + int(0.04 * 1e9)
    attributes = attributes_of(llm.attributes)
    assert (attributes["llm.provider"], attributes["llm.system"]) == ("azure", "openai")
    assert attributes["session.id"] == "s1"
    assert attributes_of(server.attributes)["http.response.status_code"] == 200


def test_a_new_trace_a_stream_event_and_an_error() -> None:
    item = exchange("chat", TOOL_STREAM_BODY, status=200, error="upstream stream broke")
    spans = write(item)
    server, llm = spans["POST /v1/chat/completions"], spans["chat mock-1"]
    assert server.parent_span_id == b"" and item.trace is not None
    assert server.trace_id.hex() == item.trace.trace_id
    assert [event.name for event in llm.events] == [FIRST_TOKEN_EVENT]
    assert llm.events[0].time_unix_nano == server.start_time_unix_nano + int(0.012 * 1e9)
    assert llm.end_time_unix_nano == server.end_time_unix_nano  # a stream's upstream span lasts until the last chunk
    assert (llm.status.code, llm.status.message) == (Status.STATUS_CODE_ERROR, "upstream stream broke")
    assert server.status.code == Status.STATUS_CODE_UNSET


def test_attribute_values_of_every_kind_survive_the_wire() -> None:
    values = {"s": "héllo \u2603", "t": True, "f": False, "i": 42, "neg": -7, "big": 2**62, "x": 0.25,
              "inf": math.inf, "list": ["a", "b"], "none": None}
    (resource_spans,) = decoded([], resource=values).resource_spans
    found = attributes_of(resource_spans.resource.attributes)
    assert found == {name: value for name, value in values.items() if value is not None}
    assert KeyValue.FromString(otlp_wire.attributes({"k": "v"}, b"\x0a")[2:]).key == "k"


def test_export_headers_follow_phoenix_and_otlp_conventions() -> None:
    assert export_headers("phoenix", {"api_key": "k1", "phoenix": "x-team=ml", "otlp": "x-other=1"}) == {
        "x-team": "ml", "authorization": "Bearer k1"}
    assert export_headers("phoenix", {"otlp": "x-other=1"}) == {"x-other": "1"}
    assert export_headers("otlp", {"otlp": "a=1,b=2", "otlp_traces": "b=3"}) == {"a": "1", "b": "3"}


def test_no_upstream_call_means_no_child_span() -> None:
    spans = write(exchange("chat", CHAT_BODY, status=401, upstream_offset=None, error="bad key"))
    assert list(spans) == ["POST /v1/chat/completions"]


def test_records_cross_the_pipe_intact() -> None:
    item = exchange("chat", TOOL_STREAM_BODY, headers=[(b"X-User-Id", b"ada"), (b"authorization", b"Bearer sk-secret")])
    record = record_of(item, {b"x-user-id": "user.id"})
    stream = io.BytesIO(frame(record) + b"\x00\x00")  # a torn last frame is ignored
    (read,) = list(read_frames(stream))
    copy, identity = exchange_of(read)
    assert identity == {"user.id": "ada"}
    assert copy.trace == item.trace and copy.chunks == item.chunks and copy.request_body == item.request_body
    # no header (and so no key) leaves the gateway process
    assert copy.request_headers == () and b"sk-secret" not in frame(record)


def test_where_spans_go() -> None:
    assert trace_export(None, None) is None
    assert trace_export("http://phoenix:6006", "http://otel:4318").kind == "phoenix"
    assert trace_export(None, "http://otel:4318").kind == "otlp"
    assert traces_url("http://phoenix:6006/") == "http://phoenix:6006/v1/traces"
    assert traces_url("http://phoenix:6006/v1/traces") == "http://phoenix:6006/v1/traces"


def test_the_environment_reaches_the_exporter_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_API_KEY", "k1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-a=1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    found = worker_settings(parse_config("providers:\n  m: {type: mock}\n", "t"), Settings(),
                            TraceExport("phoenix", "http://phoenix:6006"), "v1")
    assert found["gzip"] is True
    assert export_headers(found["kind"], found["headers"]) == {"x-a": "1", "authorization": "Bearer k1"}
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none")
    assert worker_settings(parse_config("providers:\n  m: {type: mock}\n", "t"), Settings(),
                           TraceExport("otlp", "http://otel:4318"), "v1")["gzip"] is False
