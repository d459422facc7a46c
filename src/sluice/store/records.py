"""An Exchange turned into a log row (decoded, redacted, priced), and a row turned into the log document."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from sluice.exchange import Exchange
from sluice.keys.static import presented_key
from sluice.store.assemble import assemble_stream, decode_json, reply_text, sse_events, usage_of
from sluice.store.options import RequestLogConfig
from sluice.store.redaction import Redactor

Row = dict[str, Any]
_LIMITS = {"request_id": 64, "trace_id": 64, "key_id": 128, "project": 128, "endpoint": 512, "method": 16,
           "operation": 32, "provider": 128, "model": 256, "upstream_model": 256}


class RecordBuilder:
    """Does the decoding work the request path skipped; runs in the writer, never in a request."""

    def __init__(self, config: RequestLogConfig) -> None:
        self.redactor = Redactor(config.redaction)
        self.store_bodies = config.store_bodies
        self.max_body_bytes = config.max_body_bytes
        self.prices = config.prices

    def build(self, exchange: Exchange) -> Row:
        request_body = self._body(exchange.request_body)
        if exchange.stream:
            response_body, text, usage = assemble_stream(sse_events(exchange.chunks))
        else:
            response_body = self._body(exchange.response_body)
            text, usage = reply_text(response_body), usage_of(response_body)
        withheld = not self.store_bodies or self.redactor.metadata_only(exchange.key_id, exchange.project)
        if withheld:
            request_body = response_body = text = None
        else:
            request_body, response_body = self.redactor.body(request_body), self.redactor.body(response_body)
            text = self.redactor.text(text) if text is not None else None
        prompt, completion, total = _tokens(usage)
        row = {
            "id": str(uuid.uuid4()),
            "timestamp": datetime.fromtimestamp(exchange.started_at, UTC),
            "request_id": exchange.request_id,
            "trace_id": exchange.trace_id,
            "key_id": exchange.key_id,
            "key_hash": _key_hash(exchange),
            "project": exchange.project,
            "endpoint": exchange.endpoint,
            "method": exchange.method,
            "operation": exchange.operation,
            "stream": exchange.stream,
            "status": exchange.status,
            "provider": exchange.provider,
            "model": exchange.model,
            "upstream_model": exchange.upstream_model,
            "request_headers": self.redactor.headers(exchange.request_headers),
            "request_body": request_body,
            "response_body": response_body,
            "response_text": text,
            "latency_total_ms": _ms(exchange.latency_total),
            "latency_upstream_ms": _ms(exchange.latency_upstream),
            "time_to_first_token_ms": _ms(exchange.time_to_first_token),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": total,
            "cost_usd": self._cost(exchange, prompt, completion),
            "error": _text(self.redactor.text(exchange.error)) if exchange.error else None,
            "client_disconnected": exchange.client_disconnected,
            "bodies_withheld": withheld,
        }
        for column, length in _LIMITS.items():
            if isinstance(row[column], str):
                row[column] = _text(row[column])[:length]
        return row

    def _body(self, raw: bytes | None) -> Any:
        if not raw:
            return None
        if len(raw) > self.max_body_bytes:
            return _text(raw[:self.max_body_bytes].decode("utf-8", "replace")) + f"… [truncated, {len(raw)} bytes]"
        decoded = decode_json(raw)
        return decoded if decoded is not None else _text(raw.decode("utf-8", "replace"))

    def _cost(self, exchange: Exchange, prompt: int | None, completion: int | None) -> float | None:
        price = self.prices.get(exchange.model or "") or self.prices.get(exchange.upstream_model or "")
        if price is None or (prompt is None and completion is None):
            return None
        cost = (prompt or 0) * price.input_per_million + (completion or 0) * price.output_per_million
        return round(cost / 1_000_000, 10)


def _key_hash(exchange: Exchange) -> str | None:
    headers = {name.lower(): value for name, value in exchange.request_headers}
    authorization, api_key = headers.get(b"authorization"), headers.get(b"x-api-key")
    key = presented_key(authorization.decode("latin-1") if authorization else None,
                        api_key.decode("latin-1") if api_key else None)
    return hashlib.sha256(key.encode("utf-8")).hexdigest() if key else None


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL characters."""
    return value.replace("\x00", "\ufffd")


def _tokens(usage: dict[str, Any] | None) -> tuple[int | None, int | None, int | None]:
    if not usage:
        return None, None, None
    prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    total = _int(usage.get("total_tokens"))
    if total is None and (prompt is not None or completion is not None):
        total = (prompt or 0) + (completion or 0)
    return prompt, completion, total


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def document(row: Row, *, bodies: bool = True) -> dict[str, Any]:
    """The log entry in the shape of brief 002 §4: what stdout, the export and the admin API show."""
    timestamp = row["timestamp"]
    request: dict[str, Any] = {"headers": row["request_headers"]}
    response: dict[str, Any] = {"status_code": row["status"]}
    if bodies:
        request["body"] = row["request_body"]
        response["body"] = row["response_body"]
        response["text"] = row["response_text"]
    return {
        "log_id": row["id"],
        "timestamp_utc": timestamp.isoformat() if isinstance(timestamp, datetime) else timestamp,
        "request_id": row["request_id"],
        "endpoint": row["endpoint"],
        "method": row["method"],
        "operation": row["operation"],
        "stream": row["stream"],
        "api_key_id": row["key_id"],
        "api_key_hash": row["key_hash"],
        "request": request,
        "response": response,
        "timing": {"total_latency_ms": row["latency_total_ms"], "provider_latency_ms": row["latency_upstream_ms"],
                   "time_to_first_token_ms": row["time_to_first_token_ms"]},
        "usage": {"prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"],
                  "total_tokens": row["total_tokens"]},
        "cost_usd": row["cost_usd"],
        "provider": {"name": row["provider"], "model_requested": row["model"],
                     "model_resolved": row["upstream_model"]},
        "metadata": {"trace_id": row["trace_id"], "project": row["project"],
                     "client_disconnected": row["client_disconnected"], "bodies_withheld": row["bodies_withheld"]},
        "error": row["error"],
    }


def row_from_json(data: dict[str, Any]) -> Row:
    """A row read back from the spill file (timestamps were written as ISO 8601 text)."""
    row = dict(data)
    if isinstance(row.get("timestamp"), str):
        row["timestamp"] = datetime.fromisoformat(row["timestamp"])
    return row
