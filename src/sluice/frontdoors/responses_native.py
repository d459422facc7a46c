"""A `/v1/responses` call sent to an OpenAI deployment's own Responses API (`NativeCall` "responses"): the caller's
body with Sluice's conversation in place of `previous_response_id`, the answer read back into that conversation, and
a native answer in chat's shape for the request log and the spans."""

from __future__ import annotations

from typing import Any

import orjson

from sluice.frontdoors.responses_reply import as_object, conversation_turn
from sluice.frontdoors.responses_request import namespaced, namespaces_of
from sluice.providers.openai import RESPONSE_ENDINGS
from sluice.streaming import DONE_EVENT, NotSSE, ServerSentEvent, SSEDecoder, encode_data


def native_body(body: dict[str, Any], history: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The request for the upstream: the caller's own, with the earlier turns (Sluice keeps them) before its input
    instead of `previous_response_id`, and `store: false` (the conversation is Sluice's to keep, not OpenAI's)."""
    out = {key: value for key, value in body.items() if key != "previous_response_id"}
    out["store"] = False
    if history:
        given = body.get("input")
        new = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
        out["input"] = [*history_items(history, namespaces_of(body.get("tools"))), *new]
    return out


def history_items(messages: list[dict[str, Any]], namespaces: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Stored chat messages as Responses input items."""
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            items.append({"type": "function_call_output", "call_id": message.get("tool_call_id"),
                          "output": message.get("content") or ""})
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = [_input_part(part) for part in content if isinstance(part, dict)]
        if content:
            items.append({"role": role, "content": content})
        for call in message.get("tool_calls") or []:
            function = as_object(as_object(call).get("function"))
            item = {"type": "function_call", "call_id": call.get("id"), "name": function.get("name"),
                    "arguments": function.get("arguments") or ""}
            if item["name"] in namespaces:
                item["namespace"], item["name"] = namespaces[item["name"]]
            items.append(item)
    return items


def _input_part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image_url":
        url = as_object(part.get("image_url")).get("url")
        return {"type": "input_image", "image_url": url}
    return {"type": "input_text", "text": part.get("text") or ""}


def assistant_message(response: dict[str, Any]) -> dict[str, Any]:
    """The chat assistant message of a `response` object's output: its text and its function calls (a namespace's
    under the `{namespace}__{name}` the chat form gives them)."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or []:
        item = as_object(item)
        if item.get("type") == "message":
            texts.extend(str(part.get("text") or "") for part in item.get("content") or []
                         if isinstance(part, dict) and part.get("type") == "output_text")
        elif item.get("type") == "function_call":
            name = str(item.get("name") or "")
            if isinstance(item.get("namespace"), str) and item["namespace"]:
                name = namespaced(item["namespace"], name)
            calls.append({"id": item.get("call_id"), "type": "function",
                          "function": {"name": name, "arguments": item.get("arguments") or ""}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def native_turn(chat: dict[str, Any], response: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages to keep for a natively answered turn."""
    return conversation_turn(chat, assistant_message(response))


def last_response(chunks: list[bytes] | tuple[bytes, ...]) -> dict[str, Any] | None:
    """The `response` object of a Responses stream's ending event (completed, incomplete or failed), or None."""
    decoder = SSEDecoder()
    found: dict[str, Any] | None = None
    for data in chunks:
        try:
            events = decoder.feed(data)
        except NotSSE:
            return found
        for event in events:
            found = ending_response(event) or found
    return found


def ending_response(event: ServerSentEvent) -> dict[str, Any] | None:
    """The `response` object of an event that ends a Responses stream; None for any other event."""
    if event.event not in RESPONSE_ENDINGS:
        return None
    try:
        decoded = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    response = decoded.get("response") if isinstance(decoded, dict) else None
    return response if isinstance(response, dict) else None


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """OpenAI chat usage for Responses usage."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": usage.get("total_tokens") or prompt + completion}
    cached = as_object(usage.get("input_tokens_details")).get("cached_tokens")
    if cached is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    reasoning = as_object(usage.get("output_tokens_details")).get("reasoning_tokens")
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def chat_completion(response: dict[str, Any], model: str) -> dict[str, Any]:
    """A `response` object as the chat completion the request log and the spans read."""
    message = assistant_message(response)
    finish = "tool_calls" if message.get("tool_calls") else (
        "length" if response.get("status") == "incomplete" else "stop")
    return {"id": response.get("id"), "object": "chat.completion", "created": response.get("created_at") or 0,
            "model": response.get("model") or model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": chat_usage(response.get("usage"))}


def chat_stream(chunks: list[bytes] | tuple[bytes, ...], model: str) -> list[bytes]:
    """A Responses stream as chat stream chunks (the whole answer in one delta, then its usage); nothing when its
    ending event is missing (a stream the request log's bound cut)."""
    response = last_response(chunks)
    if response is None:
        return []
    completion = chat_completion(response, model)
    choice = completion["choices"][0]
    message = dict(choice["message"])
    message["tool_calls"] = [{**call, "index": i} for i, call in enumerate(message.get("tool_calls") or [])] or None
    head = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
            "model": completion["model"]}
    delta = {key: value for key, value in message.items() if value is not None}
    return [encode_data({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": choice["finish_reason"]}]}),
            encode_data({**head, "choices": [], "usage": completion["usage"]}), DONE_EVENT]
