"""What a request log record is built from: the fields of an `Exchange` the log reads, as a NamedTuple."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sluice.exchange import Exchange


class LoggedExchange(NamedTuple):
    """The writer process rebuilds each exchange from its frame as one of these: from the frame's tuple in ~0.7 µs,
    where an `Exchange` took ~4.5 µs (its keyword arguments, defaults and slots), a sixth of the writer's work."""

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
    request_headers: Sequence[tuple[bytes, bytes]]


Loggable = Exchange | LoggedExchange
"""What the request log's builder and buffers take: the gateway's exchanges, or the writer process's."""
LOG_FIELDS = LoggedExchange._fields
