"""A natively answered exchange (an Anthropic reply or event stream relayed as it came) in OpenAI's shape, once,
for the observers: the request log, spans, usage metrics, token and budget charges read only OpenAI bodies."""

from __future__ import annotations

import time

import orjson

from sluice.exchange import Exchange
from sluice.providers.anthropic_response import from_anthropic_response
from sluice.providers.anthropic_stream import AnthropicStreamError, AnthropicStreamTranslator
from sluice.streaming import DONE_EVENT, NotSSE, SSEDecoder, encode_data


def as_openai(exchange: Exchange) -> None:
    """Replace the exchange's Anthropic body or chunks by their OpenAI equivalent; what cannot be read (a stream
    cut by the request log's bound, a broken reply) is left out rather than guessed."""
    wire, exchange.wire = exchange.wire, None
    if wire != "anthropic":
        return
    model = exchange.upstream_model or exchange.model or ""
    if exchange.stream:
        exchange.chunks = _stream_chunks(exchange.chunks, model)
    elif exchange.response_body is not None:
        exchange.response_body = _reply(exchange.response_body, model)


def _reply(body: bytes, model: str) -> bytes | None:
    try:
        message = orjson.loads(body)
        if not isinstance(message, dict):
            return None
        return orjson.dumps(from_anthropic_response(message, model=model, created=int(time.time())))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _stream_chunks(chunks: list[bytes], model: str) -> list[bytes]:
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
