"""Exchanges built the way the edge builds them: the caller's raw bytes, the mock provider's raw replies and SSE
chunks, W3C trace ids chosen before the upstream call, wall-clock start and offsets."""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sluice.exchange import Exchange
from sluice.providers.mock import chat_chunks, chat_reply, embeddings_reply
from sluice.telemetry.trace_context import TraceIds

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def caller_traceparent() -> tuple[str, str, str]:
    """A fresh caller trace id, span id and their `traceparent` (Phoenix keeps a trace id in its first project)."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def exchange(operation: str, body: dict[str, Any], *, public_model: str = "mock", provider: str = "mock",
             traceparent: str | None = None, headers: list[tuple[bytes, bytes]] | None = None,
             status: int = 200, traced: bool = True, **fields: Any) -> Exchange:
    """A finished exchange for `body` as sent by the caller; the upstream got the same body with `model` renamed."""
    upstream_body = {**body, "model": "mock-1"}
    stream = bool(body.get("stream"))
    trace = TraceIds.from_traceparent(traceparent.encode() if traceparent else None) if traced else None
    record = Exchange(
        request_id=fields.pop("request_id", "req-" + time.strftime("%H%M%S")), endpoint=f"/v1/{_PATHS[operation]}",
        method="POST", started_at=time.time() - 0.05, operation=operation, key_id="key-1", provider=provider,
        model=public_model, upstream_model="mock-1", stream=stream, status=status,
        request_headers=[(b"authorization", b"Bearer sk-secret"), *(headers or [])],
        request_body=orjson.dumps(body), latency_total=0.04, latency_upstream=0.03, upstream_offset=0.005,
        trace=trace, trace_id=trace.trace_id if trace else None,
    )
    if operation == "embeddings":
        record.response_body = orjson.dumps(embeddings_reply(upstream_body))
    elif stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        record.chunks = [b"data: " + orjson.dumps(chunk) + b"\n\n"
                         for chunk in chat_chunks(upstream_body, 3, include_usage)] + [b"data: [DONE]\n\n"]
        record.time_to_first_token = 0.012
    else:
        record.response_body = orjson.dumps(chat_reply(upstream_body))
    for name, value in fields.items():
        setattr(record, name, value)
    return record


_PATHS = {"chat": "chat/completions", "completions": "completions", "embeddings": "embeddings"}

CHAT_BODY: dict[str, Any] = {
    "model": "mock",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to Phoenix"}],
    "temperature": 0.2,
    "max_tokens": 64,
}

TOOL_STREAM_BODY: dict[str, Any] = {
    "model": "mock",
    "messages": [{"role": "user", "content": "weather in Paris"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    "tool_choice": "required",
    "stream": True,
    "stream_options": {"include_usage": True},
}


class Collector:
    """Records each export; answers 503 to the first `refuse` of them."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.app = Starlette(routes=[Route("/{path:path}", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        self.seen.append((request.url.path, dict(request.headers), await request.body()))
        if len(self.seen) <= self.refuse:
            return Response(b"busy", status_code=503)
        return Response(ExportTraceServiceRequest().SerializeToString(), media_type="application/x-protobuf")
