"""An `Exchange` as its helper processes rebuild it from a frame: the request log writer's and the span exporter's."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

from sluice.exchange import Exchange
from sluice.telemetry.trace_context import TraceIds


class ExchangeValues(NamedTuple):
    """The fields the helpers read, as a NamedTuple: rebuilt from a frame's tuple in under 1 µs, where an `Exchange`
    from keyword arguments took 3-4.5 µs (a sixth of the log writer's work per exchange). Each helper is sent only
    what it needs (`LOG_FIELDS`, `RECORD_FIELDS`); the others keep their defaults."""

    request_id: str
    endpoint: str
    method: str
    started_at: float
    operation: str | None
    key_id: str | None
    provider: str | None
    model: str | None
    upstream_model: str | None
    project: str | None
    stream: bool
    status: int
    request_body: bytes | None
    response_body: bytes | None
    chunks: Sequence[bytes]
    truncated_bytes: int
    latency_total: float | None
    latency_upstream: float | None
    time_to_first_token: float | None
    error: str | None
    error_type: str | None
    error_code: str | None
    trace_id: str | None
    client_disconnected: bool
    cache: str | None
    hops: list[dict[str, str]] | None
    route: str | None
    wire: str | None
    """Not None when the bodies are in a provider's own protocol (`Exchange.wire`): `openai_view` turns them into
    OpenAI's for the readers."""
    request_headers: Sequence[tuple[bytes, bytes]] = ()
    """Sent to the request log's writer only, with the credential headers' values redacted (`log_sender.packed`)."""
    key_hash: str | None = None
    """The caller's peppered key hash (`Principal.key_hash`): to the request log's writer only."""
    upstream_offset: float | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    prompt_template: str | None = None
    prompt_variables: dict[str, Any] | None = None
    trace: TraceIds | None = None


AnyExchange = Exchange | ExchangeValues
"""What the record builder and the span writer take: the gateway's exchanges (inline writer, tests, tools), or a
helper's."""
_COMMON = ExchangeValues._fields.index("request_headers")
_LOG_ONLY = ("request_headers", "key_hash")
assert ExchangeValues._fields[_COMMON:_COMMON + len(_LOG_ONLY)] == _LOG_ONLY
LOG_FIELDS = ExchangeValues._fields[:_COMMON + len(_LOG_ONLY)]
"""What the request log's frames carry, in this order."""
RECORD_FIELDS = ExchangeValues._fields[:_COMMON] + ExchangeValues._fields[_COMMON + len(_LOG_ONLY):-1]
"""What the span exporter's records carry, in this order (then the trace ids and the identity attributes)."""


def logged(values: Sequence[Any]) -> ExchangeValues:
    """The exchange a request log frame's values (`LOG_FIELDS`) carry."""
    if len(values) != len(LOG_FIELDS):
        raise ValueError(f"a frame of {len(values)} values, not {len(LOG_FIELDS)}")
    return ExchangeValues(*values)


def traced(values: Sequence[Any], trace: TraceIds | None) -> ExchangeValues:
    """The exchange a span record's values (`RECORD_FIELDS`) and trace ids carry."""
    if len(values) != len(RECORD_FIELDS):
        raise ValueError(f"a record of {len(values)} fields, not {len(RECORD_FIELDS)}")
    return ExchangeValues._make((*values[:_COMMON], (), None, *values[_COMMON:], trace))


def openai_view(exchange: AnyExchange) -> AnyExchange:
    """`exchange` with its bodies in OpenAI's shape, for their readers (the record builder, the span writer): a
    natively answered `/v1/messages` call's are Anthropic's (`wire`), translated here, off the request path."""
    if exchange.wire is None:
        return exchange
    from sluice.frontdoors.native_view import openai_bodies

    chunks, body = openai_bodies(exchange.wire, exchange.stream, exchange.chunks, exchange.response_body,
                                 exchange.upstream_model or exchange.model or "")
    if isinstance(exchange, ExchangeValues):
        return exchange._replace(chunks=chunks, response_body=body, wire=None)
    return dataclasses.replace(exchange, chunks=chunks, response_body=body, wire=None)
