"""A natively answered exchange (an Anthropic reply or event stream relayed as it came) in OpenAI's shape for the
readers of OpenAI bodies: translated in the request log's writer and the span exporter (serve/exchange_values.py
`openai_view`), off the request path; in the gateway only its usage is read (`native_usage`), from the bytes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from sluice.exchange import Exchange
from sluice.frontdoors.responses_native import chat_completion, chat_stream, chat_usage
from sluice.providers.anthropic_response import from_anthropic_response, openai_usage
from sluice.providers.anthropic_stream import AnthropicStreamError, AnthropicStreamTranslator
from sluice.stream_reader import usage_object as _usage_object
from sluice.streaming import DONE_EVENT, NotSSE, SSEDecoder, encode_data


def openai_bodies(wire: str, stream: bool, chunks: Sequence[bytes], body: bytes | None, model: str
                  ) -> tuple[list[bytes], bytes | None]:
    """The chunks and reply of a `wire` (`anthropic`, `responses`) exchange in OpenAI's shape; what cannot be read (a
    stream cut by the request log's bound, a broken reply) is left out rather than guessed."""
    if wire == "responses":
        return _responses_bodies(stream, chunks, body, model)
    if wire != "anthropic":
        return list(chunks), body
    if stream:
        return _stream_chunks(chunks, model), body
    return list(chunks), None if body is None else _reply(body, model)


def native_usage(exchange: Exchange) -> dict[str, Any] | None:
    """The OpenAI `usage` of a natively answered exchange, from its Anthropic bytes: a reply's `usage`, or a stream's
    first `usage` (message_start: the input) and last (message_delta: the output so far), nothing else decoded; from
    a Responses answer, the `usage` of the response object (a stream's last event)."""
    usage: dict[str, Any] | None
    if exchange.wire == "responses":
        raw = b"".join(exchange.chunks[-4:]) if exchange.stream else exchange.response_body
        return chat_usage(_usage_object(raw, raw.rfind(b'"usage"'))) if raw else None
    if exchange.stream:
        chunks = exchange.chunks
        if not chunks:
            return None
        head, tail = chunks[0], b"".join(chunks[-4:])
        first, last = _usage_object(head, head.find(b'"usage"')), _usage_object(tail, tail.rfind(b'"usage"'))
        if first is None and last is None:
            return None
        usage = {**(first or {}), **{k: v for k, v in (last or {}).items() if v is not None}}
    else:
        body = exchange.response_body
        usage = _usage_object(body, body.rfind(b'"usage"')) if body else None
        if usage is None:
            return None
    return openai_usage(usage)


def _reply(body: bytes, model: str) -> bytes | None:
    try:
        message = orjson.loads(body)
        if not isinstance(message, dict):
            return None
        return orjson.dumps(from_anthropic_response(message, model=model, created=int(time.time())))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _stream_chunks(chunks: Sequence[bytes], model: str) -> list[bytes]:
    translator = AnthropicStreamTranslator(model=model, created=int(time.time()), include_usage=True)
    decoder = SSEDecoder()
    out: list[bytes] = []
    for data in chunks:
        try:
            events = decoder.feed(data)
        except NotSSE:
            break
        for event in events:
            try:
                decoded = orjson.loads(event.data) if event.data else {}
                if isinstance(decoded, dict):
                    out.extend(encode_data(chunk) for chunk in translator.feed(event.event, decoded))
            except AnthropicStreamError:
                return out
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # an event the request log's bound cut: the rest still counts
    if translator.done:
        out.append(DONE_EVENT)
    return out


def _responses_bodies(stream: bool, chunks: Sequence[bytes], body: bytes | None, model: str
                      ) -> tuple[list[bytes], bytes | None]:
    if stream:
        return chat_stream(list(chunks), model), body
    try:
        response = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return [], None
    return [], orjson.dumps(chat_completion(response, model)) if isinstance(response, dict) else None
