"""An Exchange turned into a log record (cheaply: it runs on the gateway's core), and records, rows and documents.

A `Record` is what the writer stores: a list in `COLUMNS` order whose timestamp is ISO 8601 text and whose headers
and bodies are JSON text. Bodies stay the JSON text that crossed the wire: it is validated (and the reply decoded
for its usage and text) with orjson, but re-encoded only when a PII rule rewrites it or it is not JSON. A `Row` is
the decoded view (datetime timestamp, decoded bodies): what queries return and `document()` shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from sluice.exchange import Exchange
from sluice.pricing import PriceTable
from sluice.serve.exchange_values import AnyExchange, openai_view
from sluice.store.columns import COLUMNS, JSON_COLUMNS
from sluice.store.options import RequestLogConfig
from sluice.store.redaction import REDACTED, Redactor
from sluice.store.stamps import iso_of, iso_utc, log_ids, parse
from sluice.stream_reader import assemble_stream, reply_text, sse_events

Row = dict[str, Any]
Record = list[Any]

_INDEX = {name: index for index, name in enumerate(COLUMNS)}
ID, TIMESTAMP = _INDEX["id"], _INDEX["timestamp"]
JSON_INDEXES = tuple(_INDEX[name] for name in JSON_COLUMNS)
_LIMITS = tuple((_INDEX[name], length) for name, length in (
    ("request_id", 64), ("trace_id", 64), ("key_id", 128), ("project", 128), ("endpoint", 512), ("method", 16),
    ("operation", 32), ("provider", 128), ("model", 256), ("upstream_model", 256)))
_NUL = b"\\u0000"
_REPLACEMENT = b"\\ufffd"
_NAMES: dict[bytes, str] = {}
_CACHE_SIZE = 256


class RecordBuilder:
    """Does the decoding work the request path skipped; runs in the writer, never in a request.

    About 8 µs per plain chat exchange: this runs on the gateway's own core, so every step counts (no `uuid4`,
    no `datetime`, no decode and re-encode of bodies, redaction only when a rule can change something)."""

    def __init__(self, config: RequestLogConfig, prices: PriceTable | None = None) -> None:
        """`prices` fills `cost_usd`; without a table every cost is None."""
        self.redactor = Redactor(config.redaction)
        self.scrub = bool(self.redactor.scrubbers)
        self.store_bodies = config.store_bodies
        self.max_body_bytes = config.max_body_bytes
        self.prices = prices

    def build(self, exchange: Exchange) -> Row:
        """The decoded row for one exchange (for tools and tests; the writer keeps records)."""
        return row_of(self.record(exchange))

    def record(self, exchange: AnyExchange, log_id: str | None = None) -> Record:
        exchange = openai_view(exchange)
        started = exchange.started_at
        if not 0 < started < 1e11:
            raise ValueError(f"started_at {started!r} is not a Unix time")
        if exchange.stream:
            reply, text, usage = assemble_stream(sse_events(exchange.chunks))
            response = None if reply is None else _dumps(reply)
            if exchange.truncated_bytes:  # the middle of a long body was not kept (exchange.tap_stream)
                text = f"{text or ''}… [truncated: {exchange.truncated_bytes} bytes of the relayed body not kept]"
        else:
            response, reply = self._body(exchange.response_body)
            text, usage = _reply(reply) if type(reply) is dict else (None, None)
        request, asked = self._body(exchange.request_body)
        withheld = not self.store_bodies or self.redactor.metadata_only(exchange.key_id, exchange.project)
        if withheld:
            request = response = text = None
        elif self.scrub:
            redactor = self.redactor
            request = None if request is None else _dumps(redactor.body(asked))
            response = None if response is None else _dumps(redactor.body(reply))
            text = None if text is None else redactor.text(text)
        prompt = completion = total = None
        if usage:
            prompt, completion, total = (usage.get("prompt_tokens"), usage.get("completion_tokens"),
                                         usage.get("total_tokens"))
            prompt = prompt if type(prompt) is int else None
            completion = completion if type(completion) is int else None
            if type(total) is not int:
                total = None if prompt is None and completion is None else (prompt or 0) + (completion or 0)
        headers = self._headers(exchange)
        error = exchange.error or None
        if error is not None:
            error = _text(self.redactor.text(error) if self.scrub else error)
        total_s, upstream_s, first_s = exchange.latency_total, exchange.latency_upstream, exchange.time_to_first_token
        record: Record = [
            log_id or log_ids(1)[0], iso_utc(started), exchange.request_id, exchange.trace_id, exchange.key_id,
            exchange.key_hash, exchange.project, exchange.endpoint, exchange.method, exchange.operation,
            exchange.stream, exchange.status, exchange.provider, exchange.model, exchange.upstream_model, headers,
            request, response, text,  # latencies in milliseconds, to the microsecond:
            None if total_s is None else int(total_s * 1_000_000 + 0.5) / 1000,
            None if upstream_s is None else int(upstream_s * 1_000_000 + 0.5) / 1000,
            None if first_s is None else int(first_s * 1_000_000 + 0.5) / 1000,
            prompt, completion, total, self._cost(exchange, prompt, completion), error,
            exchange.client_disconnected, withheld, exchange.cache,
            _routing(exchange),
        ]
        for index, length in _LIMITS:
            value = record[index]
            if value is not None and (len(value) > length or "\x00" in value):
                record[index] = _text(value)[:length]
        return record

    def _body(self, raw: bytes | None) -> tuple[str | None, Any]:
        """The body as JSON text (verbatim when it is JSON) and decoded."""
        if not raw:
            return None, None
        if len(raw) > self.max_body_bytes:
            text = _text(raw[:self.max_body_bytes].decode("utf-8", "replace")) + f"… [truncated, {len(raw)} bytes]"
            return _dumps(text), text
        if _NUL in raw:
            raw = raw.replace(_NUL, _REPLACEMENT)  # PostgreSQL's JSONB and text refuse NUL
        try:
            return raw.decode(), orjson.loads(raw)
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            text = _text(raw.decode("utf-8", "replace"))
            return _dumps(text), text

    def _headers(self, exchange: AnyExchange) -> str:
        """The request headers as JSON text, a secret one's value `[REDACTED]` (`Redactor.headers`, faster)."""
        kept: dict[str, str] = {}
        secret = self.redactor.secret_headers
        for raw_name, raw_value in exchange.request_headers:
            name = _NAMES.get(raw_name)
            if name is None:
                name = raw_name.decode("latin-1").lower()
                if len(_NAMES) < _CACHE_SIZE:
                    _NAMES[raw_name] = name
            if name in secret:
                kept[name] = REDACTED
                continue
            value = raw_value.decode("latin-1")
            if self.scrub:
                value = self.redactor.text(value)
            kept[name] = f"{kept[name]}, {value}" if name in kept else value
        text = orjson.dumps(kept).decode()
        if "\\u0000" in text:
            text = text.replace("\\u0000", "\\ufffd")
        return text

    def _cost(self, exchange: AnyExchange, prompt: int | None, completion: int | None) -> float | None:
        if self.prices is None or (prompt is None and completion is None) or exchange.operation == "mcp":
            return None
        if exchange.cache == "HIT":
            return 0.0  # answered from the cache: no upstream call, nothing spent
        return self.prices.cost(exchange.model, exchange.upstream_model, prompt or 0, completion or 0)


def _reply(reply: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The text and the usage of a non-streamed reply; a plain chat completion takes the short way."""
    usage = reply.get("usage")
    choices = reply.get("choices")
    first = choices[0] if type(choices) is list and choices else None
    message = first.get("message") if type(first) is dict and "text" not in first else None
    if type(message) is dict and not message.get("tool_calls"):
        content = message.get("content")
        text = content if type(content) is str else None
    else:
        text = reply_text(reply)
    return text, usage if type(usage) is dict else None


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL characters."""
    return value.replace("\x00", "\ufffd")


def row_of(record: Record) -> Row:
    """The decoded view of a record."""
    row = dict(zip(COLUMNS, record, strict=True))
    row["timestamp"] = parse(record[TIMESTAMP])
    for name in JSON_COLUMNS:
        if row[name] is not None:
            row[name] = orjson.loads(row[name])
    return row


def record_of(row: Mapping[str, Any]) -> Record:
    """A record from a decoded row, or from a spill file line (ISO timestamp; older files hold the same shape)."""
    record: Record = [row.get(name) for name in COLUMNS]
    record[TIMESTAMP] = iso_of(record[TIMESTAMP])
    for index in JSON_INDEXES:
        if record[index] is not None:
            record[index] = _dumps(record[index])
    return record


def document(row: Row, *, bodies: bool = True) -> dict[str, Any]:
    """The log entry in the shape of brief 002 §4: what the export and the admin API show (stdout: lines.py)."""
    timestamp = row["timestamp"]
    request: dict[str, Any] = {"headers": row["request_headers"]}
    response: dict[str, Any] = {"status_code": row["status"]}
    if bodies:
        request["body"] = row["request_body"]
        response["body"] = row["response_body"]
        response["text"] = row["response_text"]
    return {
        "log_id": row["id"],
        "timestamp_utc": timestamp.isoformat(timespec="microseconds") if isinstance(timestamp, datetime) else timestamp,
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
        "routing": {"cache": row.get("cache"), "hops": (row.get("routing") or {}).get("hops"),
                    "route": (row.get("routing") or {}).get("route")},
        "error": row["error"],
    }


def _routing(exchange: AnyExchange) -> str | None:
    """The `routing` column: the hops routing made and the service route that matched, as JSON text."""
    if exchange.hops is None and exchange.route is None:
        return None
    routing: dict[str, Any] = {"hops": exchange.hops}
    if exchange.route is not None:
        routing["route"] = exchange.route
    return _dumps(routing)
