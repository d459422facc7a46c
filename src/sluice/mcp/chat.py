"""The `chat` tool's call: a child flow of the MCP request's, validated, routed, limited and logged like `/v1`."""

from __future__ import annotations

from typing import Any

import orjson

from sluice.errors import GatewayError, InvalidRequest
from sluice.http.openai import SCHEMAS, parse_body
from sluice.json_bytes import dumps_to_size
from sluice.pipeline.flow import Flow
from sluice.providers.base import JSONObject

PASSED_ON = ("max_tokens", "temperature", "top_p", "stop")
"""The `chat` tool's optional arguments that go into the chat request as they are."""


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


async def chat(edge: Flow, arguments: dict[str, Any]) -> JSONObject:
    """The parsed chat completion, made as the MCP caller (its `models` and `providers` scopes) on a child flow of
    the edge's: one exchange of its own (a request-log row, a span), the model's limits; GatewayError if refused
    or failed. The key's own limits were charged when the MCP request was admitted."""
    body = chat_body(arguments)
    principal = edge.principal
    assert principal is not None
    flow = edge.child("chat", str(body["model"]), principal)
    try:
        raw = flow.exchange.request_body = dumps_to_size(body)
        request, route = flow.route("chat", parse_body(raw, SCHEMAS["chat"]), raw)
        await flow.admit(model=flow.exchange.model, body=request.body, size=len(raw), per_key=False)
        reply: JSONObject = orjson.loads(await flow.call(request, route))
        return reply
    except GatewayError as exc:
        flow.failed(exc)
        raise
    finally:
        flow.finish()


def reply_text(reply: JSONObject) -> str:
    """The assistant's text in a chat completion (empty when it has none)."""
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""
