"""The `chat` tool's call: a child flow of the MCP request's, validated, routed, limited and logged like `/v1`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import orjson

from sluice.errors import GatewayError, InvalidRequest, UpstreamError
from sluice.http.openai import SCHEMAS, parse_body
from sluice.json_bytes import dumps_to_size
from sluice.pipeline.flow import Flow
from sluice.providers.base import JSONObject, UpstreamRequest
from sluice.routing.cache import BYPASS
from sluice.routing.table import ModelRoute
from sluice.streaming import SSEDecoder

PASSED_ON = ("max_tokens", "temperature", "top_p", "stop")
"""The `chat` tool's optional arguments that go into the chat request as they are."""

Pieces = Callable[[str], Awaitable[None]]
"""Told each piece of the reply's text as a streamed chat brings it (the MCP progress notifications)."""


def chat_body(arguments: dict[str, Any]) -> JSONObject:
    """The OpenAI chat request for the tool's arguments: `model`, and `messages` or a `prompt` (one user message)."""
    model = arguments.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("The 'model' argument is required (a model name from list_models).", param="model")
    messages = arguments.get("messages")
    prompt = arguments.get("prompt")
    if messages is None:
        if not isinstance(prompt, str) or not prompt:
            raise InvalidRequest("Give 'messages' (a list of {role, content}) or 'prompt' (a string).",
                                 param="messages")
        messages = [{"role": "user", "content": prompt}]
    body: JSONObject = {"model": model, "messages": messages, "stream": False}
    body.update({name: arguments[name] for name in PASSED_ON if name in arguments})
    return body


async def chat(edge: Flow, arguments: dict[str, Any], pieces: Pieces | None = None) -> JSONObject:
    """The parsed chat completion, made as the MCP caller (its `models` and `providers` scopes) on a child flow of
    the edge's: one exchange of its own (a request-log row, a span), the model's limits; GatewayError if refused
    or failed. The key's own limits were charged when the MCP request was admitted.

    With `pieces` the upstream call is streamed (with `include_usage`, so the row's usage is the model's own) and
    `pieces` is told each piece of text as it comes; the reply is then assembled from the stream."""
    body = chat_body(arguments)
    if pieces is not None:
        body.update(stream=True, stream_options={"include_usage": True})
    principal = edge.principal
    assert principal is not None
    flow = edge.child("chat", str(body["model"]), principal)
    try:
        raw = flow.exchange.request_body = dumps_to_size(body)
        request, route = flow.route("chat", parse_body(raw, SCHEMAS["chat"]), raw)
        await flow.admit(model=flow.exchange.model, body=request.body, size=len(raw), per_key=False)
        if pieces is not None:
            return await _streamed(flow, request, route, pieces)
        reply: JSONObject = orjson.loads(await flow.call(request, route))
        return reply
    except GatewayError as exc:
        flow.failed(exc)
        raise
    finally:
        flow.finish()


async def _streamed(flow: Flow, request: UpstreamRequest, route: ModelRoute, pieces: Pieces) -> JSONObject:
    """The child flow's stream read to its end (the flow keeps its chunks for the log): the first choice's text
    told piece by piece, then a completion-shaped reply with that text, the model and the last usage seen."""
    flow.exchange.cache = BYPASS  # streams are never cached (docs/caching.md)
    chunks = await flow.open_stream(request, route)
    text: list[str] = []
    reply: JSONObject = {"model": None, "usage": None}
    try:
        async with aclosing(_events(chunks)) as events:
            async for event in events:
                reply["model"] = event.get("model", reply["model"])
                if event.get("usage"):
                    reply["usage"] = event["usage"]
                piece = _delta_text(event)
                if piece:
                    text.append(piece)
                    await pieces(piece)
    finally:
        await chunks.aclose()
    reply["choices"] = [{"index": 0, "message": {"role": "assistant", "content": "".join(text)}}]
    return reply


async def _events(chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[JSONObject, None]:
    """Each `chat.completion.chunk` of an SSE stream; an error event raises UpstreamError (502)."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            if not event.data or event.data == "[DONE]":
                continue
            parsed = orjson.loads(event.data)
            if not isinstance(parsed, dict):
                raise UpstreamError("The upstream sent a stream event that is not a JSON object.", status=502)
            error = parsed.get("error")
            if isinstance(error, dict):
                raise UpstreamError(str(error.get("message") or "The upstream stream failed."), status=502)
            yield parsed


def _delta_text(event: JSONObject) -> str:
    """The text a chunk adds to choice 0 (other choices, tool calls and empty deltas add none)."""
    for choice in event.get("choices") or ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            return content if isinstance(content, str) else ""
    return ""


def reply_text(reply: JSONObject) -> str:
    """The assistant's text in a chat completion (empty when it has none)."""
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""
