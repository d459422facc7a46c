"""OpenAI chat completions and errors translated to Anthropic Messages API messages and error bodies.

Choices made where the two shapes differ:
- Reasoning (`reasoning_content`, or `reasoning` as some OpenAI-compatible servers call it) becomes a leading
  `thinking` block whose `signature` is "" (there is none to give; Sluice drops thinking blocks sent back).
- Tool call arguments that are not a JSON object (invalid JSON, or an array or number) become
  `input: {"_raw": "<the arguments as sent>"}`: nothing the model said is lost, and the caller's tool sees
  an input it will reject, rather than Sluice guessing or failing the whole reply. Empty arguments are `{}`.
- `finish_reason: "stop"` on a reply that carries tool calls is `stop_reason: "tool_use"` (agents loop on it).
- OpenAI does not say which stop sequence matched, so `stop_sequence` is always null; OpenAI does not report
  cache writes, so `cache_creation_input_tokens` is 0.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson

RAW_ARGUMENTS_KEY = "_raw"
STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
DEFAULT_STOP_REASON = "end_turn"
REASONING_FIELDS = ("reasoning_content", "reasoning")
CHAT_ID_PREFIX = "chatcmpl-"
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class ChatReplyError(ValueError):
    """An upstream reply that is not an OpenAI chat completion."""


def stop_reason(finish_reason: Any, *, has_tool_calls: bool) -> str:
    """The Anthropic `stop_reason` for an OpenAI `finish_reason` (unknown or missing reasons are "end_turn")."""
    reason = STOP_REASONS.get(finish_reason, DEFAULT_STOP_REASON) if isinstance(finish_reason, str) else None
    if has_tool_calls and reason in (None, "end_turn"):
        return "tool_use"
    return reason or DEFAULT_STOP_REASON


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def anthropic_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage for OpenAI usage: Anthropic's `input_tokens` excludes the tokens read from the cache."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = _count(usage.get("prompt_tokens"))
    out: dict[str, Any] = {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": _count(usage.get("completion_tokens")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }
    completion_details = usage.get("completion_tokens_details")
    if isinstance(completion_details, dict) and isinstance(completion_details.get("reasoning_tokens"), int):
        out["output_tokens_details"] = {"thinking_tokens": _count(completion_details["reasoning_tokens"])}
    return out


def message_id(chat_id: Any) -> str:
    """`msg_` and the tail of the chat completion id (a fresh random tail when there is none)."""
    tail = chat_id.removeprefix(CHAT_ID_PREFIX) if isinstance(chat_id, str) else ""
    return f"msg_{tail or uuid.uuid4().hex}"


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the `input` object; anything but a JSON object is kept under `_raw`."""
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if isinstance(arguments, dict):
        return arguments
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):  # not JSON; or a number over 4,300 digits, or nested too deep
        decoded = None
    return decoded if isinstance(decoded, dict) else {RAW_ARGUMENTS_KEY: text}


def reasoning_text(message: dict[str, Any]) -> str:
    """The reasoning a chat message or delta carries, under either name servers use."""
    for name in REASONING_FIELDS:
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def content_text(content: Any) -> str:
    """The text of OpenAI message content: a string, or the text of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def chat_to_message(reply: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The Anthropic `message` for an OpenAI `chat.completion` (its first choice), named `model`."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ChatReplyError("The reply is not a chat completion with a choice.")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ChatReplyError("The reply's choice has no message.")
    blocks = _content_blocks(message)
    has_tool_calls = any(block["type"] == "tool_use" for block in blocks)
    return {
        "id": message_id(reply.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason(choice.get("finish_reason"), has_tool_calls=has_tool_calls),
        "stop_sequence": None,
        "usage": anthropic_usage(reply.get("usage")),
    }


def _content_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    thinking = reasoning_text(message)
    if thinking:
        blocks.append({"type": "thinking", "thinking": thinking, "signature": ""})
    text = content_text(message.get("content")) or content_text(message.get("refusal"))
    if text:
        blocks.append({"type": "text", "text": text})
    tool_calls = message.get("tool_calls")
    for call in tool_calls if isinstance(tool_calls, list) else []:
        if isinstance(call, dict):
            blocks.append(_tool_use(call))
    return blocks


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    call_id = call.get("id")
    return {
        "type": "tool_use",
        "id": call_id if isinstance(call_id, str) and call_id else f"toolu_{uuid.uuid4().hex}",
        "name": str(function.get("name") or ""),
        "input": tool_input(function.get("arguments")),
    }


# --- errors ---------------------------------------------------------------------------------------------------


def error_type_for(status: int) -> str:
    """Anthropic's error type for an HTTP status; other 4xx are `invalid_request_error`, other 5xx `api_error`."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """The Anthropic error body `{"type": "error", "error": {"type", "message"}}` for `status`."""
    return {"type": "error", "error": {"type": error_type or error_type_for(status), "message": message}}


def sse_event(event_type: str, data: dict[str, Any]) -> bytes:
    """One named server-sent event, as Anthropic frames them."""
    return b"event: " + event_type.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_error_event(status: int, message: str, error_type: str | None = None) -> bytes:
    """The `event: error` SSE event Anthropic sends when a stream that began with HTTP 200 fails."""
    return sse_event("error", anthropic_error(status, message, error_type))
