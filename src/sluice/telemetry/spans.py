"""Build a finished exchange's spans with the OpenTelemetry SDK, after the fact, with the ids the request used.

The request path chose the ids (`TraceIds`) and told the upstream; here the SDK must produce spans with
exactly those ids. The SDK takes a span's trace id from its parent and asks its `IdGenerator` for the span id,
so `PresetIds` hands out the id of the span about to start, and the caller's span (or nothing, for a new trace)
is the parent through a `NonRecordingSpan`. Timestamps come from the exchange (`start_time`/`end_time` in ns).
Runs in the span exporter process (`span_worker.py`), one exchange at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from openinference.semconv.trace import OpenInferenceSpanKindValues, SpanAttributes
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from sluice.exchange import Exchange
from sluice.store.redaction import Redactor
from sluice.telemetry import openinference as oi

FIRST_TOKEN_EVENT = "first_token"


class PresetIds(IdGenerator):
    """Returns the ids set just before a span starts; random ones when none is set."""

    def __init__(self) -> None:
        self.trace_id: int | None = None
        self.span_id: int | None = None
        self._random = RandomIdGenerator()

    def generate_trace_id(self) -> int:
        trace_id, self.trace_id = self.trace_id, None
        return trace_id if trace_id is not None else self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        span_id, self.span_id = self.span_id, None
        return span_id if span_id is not None else self._random.generate_span_id()


@dataclass(frozen=True)
class SpanOptions:
    """What the spans show: provider types (name → `openai`, `azure`…), hidden contents, redaction."""

    provider_types: dict[str, str] = field(default_factory=dict)
    hide_inputs: bool = False
    hide_outputs: bool = False
    redactor: Redactor | None = None
    """The request log's redaction rules: PII scrubbed from contents, metadata-only keys and projects hidden."""


@dataclass(slots=True)
class _Contents:
    """An exchange's decoded, redacted contents, and whether each side may be shown."""

    request: Any
    reply: Any
    raw_input: bytes | None
    output: str | None
    hide_input: bool
    hide_output: bool
    prompt_variables: Any = None


@dataclass(slots=True)
class _Times:
    start: int
    end: int
    upstream_start: int | None
    upstream_end: int | None
    first_token: int | None


class SpanWriter:
    """Turns exchanges into a SERVER span (OpenInference CHAIN) and a child span for the upstream call."""

    def __init__(self, provider: TracerProvider, ids: PresetIds, options: SpanOptions) -> None:
        self.tracer = provider.get_tracer("sluice")
        self.ids = ids
        self.options = options

    def write(self, exchange: Exchange, identity: dict[str, str]) -> None:
        """Emit the spans of `exchange`; `identity` holds `session.id`/`user.id` taken from its headers."""
        ids = exchange.trace
        if ids is None:
            return
        times = _times(exchange)
        parent = _parent_context(ids.trace_id, ids.parent_span_id)
        contents = self._contents(exchange)
        error = self._redact(exchange.error)
        common = {**identity, **_sluice_attributes(exchange)}
        self.ids.trace_id, self.ids.span_id = int(ids.trace_id, 16), int(ids.server_span_id, 16)
        server = self.tracer.start_span(
            f"{exchange.method} {exchange.endpoint}", context=parent, kind=SpanKind.SERVER, start_time=times.start,
            attributes={**common, **_server_attributes(exchange, contents)},
        )
        if exchange.status >= 500:
            server.set_status(Status(StatusCode.ERROR, error))
        if times.upstream_start is not None:
            self.ids.span_id = int(ids.upstream_span_id, 16)
            upstream = self.tracer.start_span(
                _upstream_name(exchange), context=trace.set_span_in_context(server), kind=SpanKind.CLIENT,
                start_time=times.upstream_start, attributes={**common, **self._llm_attributes(exchange, contents)},
            )
            if times.first_token is not None:
                upstream.add_event(FIRST_TOKEN_EVENT, timestamp=times.first_token)
            if exchange.error is not None:
                upstream.set_status(Status(StatusCode.ERROR, error))
            upstream.end(end_time=times.upstream_end)
        server.end(end_time=times.end)

    def _contents(self, exchange: Exchange) -> _Contents:
        request, reply, output = _decoded(exchange)
        variables = exchange.prompt_variables
        if exchange.prompt_template is not None and isinstance(request, dict):
            request = oi.with_prompt(request, exchange.prompt_template, variables or {})
        raw_input = exchange.request_body
        hide_input, hide_output = self.options.hide_inputs, self.options.hide_outputs
        redactor = self.options.redactor
        if redactor is not None and redactor.metadata_only(exchange.key_id, exchange.project):
            hide_input = hide_output = True
        elif redactor is not None and redactor.scrubbers:
            request, reply = redactor.body(request), redactor.body(reply)
            variables = redactor.body(variables)
            raw_input = redactor.text(raw_input.decode("utf-8", "replace")).encode() if raw_input else None
            output = redactor.text(output) if output is not None else None
        return _Contents(request, reply, raw_input, output, hide_input, hide_output, variables)

    def _redact(self, text: str | None) -> str | None:
        redactor = self.options.redactor
        return redactor.text(text) if redactor is not None and text is not None else text

    def _llm_attributes(self, exchange: Exchange, contents: _Contents) -> oi.Attributes:
        operation = exchange.operation
        attributes: oi.Attributes = {SpanAttributes.OPENINFERENCE_SPAN_KIND: oi.span_kind(operation)}
        provider_type = self.options.provider_types.get(exchange.provider or "", "")
        if provider_type in oi.PROVIDERS:
            attributes[SpanAttributes.LLM_PROVIDER] = oi.PROVIDERS[provider_type]
            attributes[SpanAttributes.LLM_SYSTEM] = oi.SYSTEMS[provider_type]
        if exchange.upstream_model:
            name = SpanAttributes.EMBEDDING_MODEL_NAME if operation == "embeddings" else SpanAttributes.LLM_MODEL_NAME
            attributes[name] = exchange.upstream_model
        attributes.update(oi.request_attributes(operation, contents.request, contents.raw_input,
                                                hide=contents.hide_input))
        attributes.update(oi.response_attributes(operation, contents.reply, contents.output,
                                                 hide=contents.hide_output))
        if exchange.prompt_template is not None:
            attributes.update(oi.prompt_template_attributes(
                exchange.prompt_template, contents.prompt_variables, exchange.prompt_name, exchange.prompt_version,
                hide=contents.hide_input))
        return attributes


def _server_attributes(exchange: Exchange, contents: _Contents) -> oi.Attributes:
    attributes: oi.Attributes = {
        SpanAttributes.OPENINFERENCE_SPAN_KIND: OpenInferenceSpanKindValues.CHAIN.value,
        "http.request.method": exchange.method,
        "url.path": exchange.endpoint,
        "http.response.status_code": exchange.status,
    }
    attributes.update(oi.request_attributes(None, None, contents.raw_input, hide=contents.hide_input))
    attributes.update(oi.response_attributes(None, None, contents.output, hide=contents.hide_output))
    return attributes


def _parent_context(trace_id: str, parent_span_id: str | None) -> Any:
    """The context the server span starts in: the caller's span, or an invalid one (so a new trace starts)."""
    if parent_span_id is None:
        return trace.set_span_in_context(trace.INVALID_SPAN)
    return trace.set_span_in_context(NonRecordingSpan(SpanContext(
        int(trace_id, 16), int(parent_span_id, 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))))


def _decoded(exchange: Exchange) -> tuple[Any, Any, str | None]:
    """The request body, the reply (streams assembled) and the output text to show."""
    request = oi.load_json(exchange.request_body)
    if exchange.stream:
        reply = oi.assemble_stream(exchange.chunks)
        output = orjson.dumps(reply).decode() if reply is not None else None
        return request, reply, output
    reply = oi.load_json(exchange.response_body)
    output = exchange.response_body.decode("utf-8", "replace") if exchange.response_body else None
    if exchange.operation == "embeddings" and isinstance(reply, dict):
        reply = {key: value for key, value in reply.items() if key != "data"}  # vectors stay out of spans
        output = orjson.dumps(reply).decode()
    return request, reply, output


def _sluice_attributes(exchange: Exchange) -> oi.Attributes:
    found = {"sluice.request_id": exchange.request_id, "sluice.key_id": exchange.key_id,
             "sluice.project": exchange.project, "sluice.model": exchange.model,
             "sluice.provider": exchange.provider}
    attributes: oi.Attributes = {name: value for name, value in found.items() if value is not None}
    metadata = {name.removeprefix("sluice."): value for name, value in attributes.items()}
    attributes[SpanAttributes.METADATA] = orjson.dumps(metadata).decode()
    if exchange.client_disconnected:
        attributes["sluice.client_disconnected"] = True
    return attributes


def _upstream_name(exchange: Exchange) -> str:
    if exchange.operation in ("chat", "completions", "embeddings"):
        return f"{exchange.operation} {exchange.upstream_model or exchange.model or ''}".strip()
    return f"{exchange.operation or 'upstream'} {exchange.provider or ''}".strip()


def _times(exchange: Exchange) -> _Times:
    """Nanosecond timestamps of the spans, from the exchange's wall-clock start and offsets."""
    start = int(exchange.started_at * 1e9)
    end = start + int((exchange.latency_total or 0.0) * 1e9)
    first = start + int(exchange.time_to_first_token * 1e9) if exchange.time_to_first_token is not None else None
    if exchange.upstream_offset is None:
        return _Times(start, end, None, None, first)
    upstream_start = start + int(exchange.upstream_offset * 1e9)
    if exchange.stream or exchange.latency_upstream is None:
        upstream_end = end
    else:
        upstream_end = upstream_start + int(exchange.latency_upstream * 1e9)
    return _Times(start, max(end, upstream_end), upstream_start, upstream_end, first)
