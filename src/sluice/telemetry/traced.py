"""What a span is built from: the fields of an `Exchange` the span exporter reads, as a NamedTuple."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sluice.exchange import Exchange
from sluice.telemetry.trace_context import TraceIds


class TracedExchange(NamedTuple):
    """The span exporter rebuilds each exchange from its record as one of these (`TracedExchange(*values, ids)`,
    under 1 µs, where an `Exchange` from keyword arguments took ~3 µs)."""

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
    latency_total: float | None
    latency_upstream: float | None
    time_to_first_token: float | None
    error: str | None
    error_type: str | None
    error_code: str | None
    trace_id: str | None
    client_disconnected: bool
    upstream_offset: float | None
    prompt_name: str | None
    prompt_version: int | None
    prompt_template: str | None
    prompt_variables: dict[str, Any] | None
    trace: TraceIds | None


Traced = Exchange | TracedExchange
"""What `spans.SpanWriter` takes: the gateway's exchanges (tests, tools), or the exporter's."""
RECORD_FIELDS = TracedExchange._fields[:-1]
"""The fields a record carries (`tracing.record_of`), then the trace ids."""
