"""Build a finished exchange's spans, after the fact, with the ids the request used, as OTLP protobuf bytes.

The request path chose the ids (`TraceIds`) and told the upstream; here the spans are written with exactly those
ids (`otlp_wire.py`): the SERVER span's parent is the caller's span (remote) or none, for a new trace; the
upstream CLIENT span is its child. Timestamps come from the exchange (Unix nanoseconds). Runs in the span exporter
process (`span_worker.py`), one exchange at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from openinference.semconv.trace import OpenInferenceSpanKindValues, SpanAttributes

from sluice.serve.exchange_values import AnyExchange, openai_view
from sluice.store.redaction import Redactor
from sluice.stream_reader import assemble_stream, sse_events
from sluice.telemetry import openinference as oi
from sluice.telemetry import otlp_wire

FIRST_TOKEN_EVENT = "first_token"


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
    """Turns exchanges into a SERVER span (OpenInference CHAIN) and a child span for the upstream call, each handed
    to `emit` as an encoded `Span` (`otlp_wire.span`)."""

    def __init__(self, emit: Callable[[bytes], None], options: SpanOptions) -> None:
        self.emit = emit
        self.options = options

    def write(self, exchange: AnyExchange, identity: dict[str, str]) -> None:
        """Emit the spans of `exchange`; `identity` holds `session.id`/`user.id` taken from its headers."""
        ids = exchange.trace
        if ids is None:
            return
        exchange = openai_view(exchange)
        times = _times(exchange)
        contents = self._contents(exchange)
        error = self._redact(exchange.error)
        common = otlp_wire.span_attributes({**identity, **_sluice_attributes(exchange)})
        trace_id, server_id = bytes.fromhex(ids.trace_id), bytes.fromhex(ids.server_span_id)
        if ids.nested and ids.parent_span_id is not None:
            server_id = bytes.fromhex(ids.parent_span_id)  # a step of another request: a child of its server span
        if times.upstream_start is not None and times.upstream_end is not None:
            self.emit(otlp_wire.span(
                trace_id=trace_id, span_id=bytes.fromhex(ids.upstream_span_id), parent_span_id=server_id,
                parent_is_remote=False, name=_upstream_name(exchange), kind=otlp_wire.SPAN_KIND_CLIENT,
                start=times.upstream_start, end=times.upstream_end,
                attributes_=self._llm_attributes(exchange, contents), shared=common,
                events=[(FIRST_TOKEN_EVENT, times.first_token)] if times.first_token is not None else (),
                error=(error or "") if exchange.error is not None else None))
        if ids.nested:
            return
        caller = ids.parent_span_id
        self.emit(otlp_wire.span(
            trace_id=trace_id, span_id=server_id, parent_span_id=bytes.fromhex(caller) if caller else None,
            parent_is_remote=caller is not None, name=f"{exchange.method} {exchange.endpoint}",
            kind=otlp_wire.SPAN_KIND_SERVER, start=times.start, end=times.end,
            attributes_=_server_attributes(exchange, contents), shared=common,
            error=(error or "") if exchange.status >= 500 else None))

    def _contents(self, exchange: AnyExchange) -> _Contents:
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

    def _llm_attributes(self, exchange: AnyExchange, contents: _Contents) -> oi.Attributes:
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


def _server_attributes(exchange: AnyExchange, contents: _Contents) -> oi.Attributes:
    attributes: oi.Attributes = {
        SpanAttributes.OPENINFERENCE_SPAN_KIND: OpenInferenceSpanKindValues.CHAIN.value,
        "http.request.method": exchange.method,
        "url.path": exchange.endpoint,
        "http.response.status_code": exchange.status,
    }
    attributes.update(oi.request_attributes(None, None, contents.raw_input, hide=contents.hide_input))
    attributes.update(oi.response_attributes(None, None, contents.output, hide=contents.hide_output))
    return attributes


def _decoded(exchange: AnyExchange) -> tuple[Any, Any, str | None]:
    """The request body, the reply (streams assembled) and the output text to show."""
    request = oi.load_json(exchange.request_body)
    if exchange.stream:
        reply = assemble_stream(sse_events(exchange.chunks))[0]
        output = orjson.dumps(reply).decode() if reply is not None else None
        return request, reply, output
    reply = oi.load_json(exchange.response_body)
    output = exchange.response_body.decode("utf-8", "replace") if exchange.response_body else None
    if exchange.operation == "embeddings" and isinstance(reply, dict):
        reply = {key: value for key, value in reply.items() if key != "data"}  # vectors stay out of spans
        output = orjson.dumps(reply).decode()
    return request, reply, output


def _sluice_attributes(exchange: AnyExchange) -> oi.Attributes:
    found = {"sluice.request_id": exchange.request_id, "sluice.key_id": exchange.key_id,
             "sluice.project": exchange.project, "sluice.model": exchange.model,
             "sluice.provider": exchange.provider}
    attributes: oi.Attributes = {name: value for name, value in found.items() if value is not None}
    metadata = {name.removeprefix("sluice."): value for name, value in attributes.items()}
    attributes[SpanAttributes.METADATA] = orjson.dumps(metadata).decode()
    if exchange.client_disconnected:
        attributes["sluice.client_disconnected"] = True
    if exchange.cache is not None:
        attributes["sluice.cache"] = exchange.cache
    if exchange.hops:
        attributes["sluice.routing.hops"] = orjson.dumps(exchange.hops).decode()
    if exchange.route is not None:
        attributes["sluice.route"] = exchange.route
    return attributes


def _upstream_name(exchange: AnyExchange) -> str:
    if exchange.operation in ("chat", "completions", "embeddings"):
        return f"{exchange.operation} {exchange.upstream_model or exchange.model or ''}".strip()
    return f"{exchange.operation or 'upstream'} {exchange.provider or ''}".strip()


def _times(exchange: AnyExchange) -> _Times:
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
