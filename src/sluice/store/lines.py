"""Records as JSON lines: the stdout line of each exchange, and the spill file's lines.

Both embed the headers and bodies as the JSON text the record already holds, so nothing is decoded or re-encoded,
and a whole batch becomes one bytes object, written at once. The stdout line without bodies (the default) is the
one made for every exchange, so it is assembled from text: the members that repeat from one exchange to the next
(route, key, provider) are encoded once and cached, the numbers are encoded in one orjson call.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from sluice.store.columns import COLUMNS
from sluice.store.records import JSON_INDEXES, Record, record_of
from sluice.telemetry.logs import render_request_lines

_LINE = orjson.OPT_APPEND_NEWLINE
_Fragment = orjson.Fragment
_MEMBERS: dict[tuple[Any, ...], str] = {}
_MEMBERS_CACHE = 1024


def _json(text: str | None) -> Any:
    return None if text is None else _Fragment(text)


def console_lines(records: Sequence[Record]) -> bytes:
    """The stdout lines for people (SLUICE_LOG_FORMAT=console on a terminal): time, method, path, key=value pairs."""
    return render_request_lines((_document(record, False) for record in records), "console")


def stdout_lines(records: Sequence[Record], *, bodies: bool) -> bytes:
    """One line per record, in the shape of `records.document()` (which the admin API and the export use)."""
    if bodies:
        return b"".join([orjson.dumps(_document(record, bodies), option=_LINE) for record in records])
    return "".join([_line(record) for record in records]).encode()


def _members(key: tuple[Any, ...], members: dict[str, Any]) -> str:
    """`members` as the inside of a JSON object, cached under `key`."""
    text = orjson.dumps(members).decode()[1:-1]
    if len(_MEMBERS) >= _MEMBERS_CACHE:
        _MEMBERS.clear()
    _MEMBERS[key] = text
    return text


def _text(value: str | None) -> str:
    return "null" if value is None else orjson.dumps(value).decode()


def _line(record: Record) -> str:
    """The stdout line of `record` without bodies: `_document(record, False)` as JSON text, made faster."""
    (log_id, timestamp, request_id, trace_id, key_id, key_hash, project, endpoint, method, operation, stream, status,
     provider, model, upstream_model, headers, _, _, _, total_ms, upstream_ms, first_token_ms, prompt, completion,
     tokens, cost, error, disconnected, withheld, cache, routing) = record
    who = ("who", endpoint, method, operation, stream, key_id, key_hash)
    head = _MEMBERS.get(who) or _members(who, {
        "endpoint": endpoint, "method": method, "operation": operation, "stream": stream, "api_key_id": key_id,
        "api_key_hash": key_hash})
    route = ("route", provider, model, upstream_model)
    provided = _MEMBERS.get(route) or _members(route, {
        "provider": {"name": provider, "model_requested": model, "model_resolved": upstream_model}})
    flags = ("flags", project, disconnected, withheld)
    meta = _MEMBERS.get(flags) or _members(flags, {
        "project": project, "client_disconnected": disconnected, "bodies_withheld": withheld})
    status_, total_, upstream_, first_, prompt_, completion_, tokens_, cost_ = orjson.dumps(
        (status, total_ms, upstream_ms, first_token_ms, prompt, completion, tokens, cost)).decode()[1:-1].split(",")
    return (f'{{"log_id":"{log_id}","timestamp_utc":"{timestamp}","request_id":{_text(request_id)},{head},'
            f'"request":{{"headers":{headers or "null"}}},"response":{{"status_code":{status_}}},'
            f'"timing":{{"total_latency_ms":{total_},"provider_latency_ms":{upstream_},'
            f'"time_to_first_token_ms":{first_}}},"usage":{{"prompt_tokens":{prompt_},'
            f'"completion_tokens":{completion_},"total_tokens":{tokens_}}},"cost_usd":{cost_},{provided},'
            f'"metadata":{{"trace_id":{_text(trace_id)},{meta}}},"error":{_text(error)},'
            f'"routing":{_routing(cache, routing)}}}\n')


def _routing(cache: str | None, routing: str | None) -> str:
    """The entry's `routing` member: the cache outcome, and the hops and matched route of the `routing` column."""
    if routing is None:
        return f'{{"cache":{_text(cache)},"hops":null,"route":null}}'
    decoded = orjson.loads(routing)
    return orjson.dumps({"cache": cache, "hops": decoded.get("hops"), "route": decoded.get("route")}).decode()


def _document(record: Record, bodies: bool) -> dict[str, Any]:
    (log_id, timestamp, request_id, trace_id, key_id, key_hash, project, endpoint, method, operation, stream, status,
     provider, model, upstream_model, headers, request_body, response_body, text, total_ms, upstream_ms,
     first_token_ms, prompt, completion, tokens, cost, error, disconnected, withheld, cache, routing) = record
    request: dict[str, Any] = {"headers": None if headers is None else _Fragment(headers)}
    response: dict[str, Any] = {"status_code": status}
    if bodies:
        request["body"] = _json(request_body)
        response["body"] = _json(response_body)
        response["text"] = text
    return {
        "log_id": log_id, "timestamp_utc": timestamp, "request_id": request_id, "endpoint": endpoint,
        "method": method, "operation": operation, "stream": stream, "api_key_id": key_id, "api_key_hash": key_hash,
        "request": request, "response": response,
        "timing": {"total_latency_ms": total_ms, "provider_latency_ms": upstream_ms,
                   "time_to_first_token_ms": first_token_ms},
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": tokens},
        "cost_usd": cost,
        "provider": {"name": provider, "model_requested": model, "model_resolved": upstream_model},
        "metadata": {"trace_id": trace_id, "project": project, "client_disconnected": disconnected,
                     "bodies_withheld": withheld},
        "error": error,
        "routing": orjson.loads(_routing(cache, routing)),
    }


def spill_lines(records: Sequence[Record]) -> bytes:
    """One JSON object per record, keyed by column, timestamp as ISO 8601, headers and bodies as JSON."""
    lines = []
    for record in records:
        values = list(record)
        for index in JSON_INDEXES:
            values[index] = _json(record[index])
        lines.append(orjson.dumps(dict(zip(COLUMNS, values, strict=True)), option=_LINE))
    return b"".join(lines)


def spilled_record(line: bytes) -> Record:
    """The record of a spill file line (raises ValueError or TypeError when the line is not one)."""
    data = orjson.loads(line)
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ValueError("not a request log entry")
    return record_of(data)


async def write_stdout(data: bytes) -> None:
    """One write of many lines: at once to a file, in a thread to a pipe or a terminal (which may block)."""
    if _stdout_is_a_file():
        _write_stdout(data)
    else:
        await asyncio.to_thread(_write_stdout, data)


def _stdout_is_a_file() -> bool:
    try:
        return stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor (tests), or closed
        return False


def _write_stdout(data: bytes) -> None:
    """As bytes when stdout has a binary buffer (no decode and re-encode)."""
    stream = sys.stdout
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(data.decode())
        stream.flush()
        return
    stream.flush()  # whatever the text layer holds goes first
    buffer.write(data)
    buffer.flush()
