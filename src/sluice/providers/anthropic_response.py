"""Anthropic Messages API replies and errors translated to OpenAI chat completions and error objects."""

from __future__ import annotations

import json
from typing import Any

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type → OpenAI error `type`; the OpenAI `code` is always the Anthropic type itself.
ERROR_TYPES: dict[str, str] = {
    "invalid_request_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "not_found_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "billing_error": "insufficient_quota",
    "rate_limit_error": "rate_limit_error",
    "api_error": "server_error",
    "overloaded_error": "server_error",
    "timeout_error": "server_error",
}
UNKNOWN_ERROR_TYPE = "upstream_error"
# Statuses returned to the client in place of the upstream's: 529 is Anthropic-only.
STATUS_MAP: dict[int, int] = {529: 503}
MAX_TEXT_MESSAGE = 500


def finish_reason(stop_reason: str | None) -> str | None:
    """The OpenAI `finish_reason` for an Anthropic `stop_reason` (unknown reasons read as "stop")."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage for Anthropic usage, whose `input_tokens` excludes cache reads and writes."""
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_write = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cache_read + cache_write
    completion = usage.get("output_tokens") or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and details.get("thinking_tokens") is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": details["thinking_tokens"]}
    return out


def compact_json(value: Any) -> str:
    """`value` as JSON without insignificant whitespace, as OpenAI sends tool call arguments."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def from_anthropic_response(message: dict[str, Any], *, model: str, created: int) -> dict[str, Any]:
    """The OpenAI `chat.completion` for an Anthropic Messages API reply."""
    blocks = message.get("content") or []
    texts = [block["text"] for block in blocks if block.get("type") == "text"]
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    tool_calls = [_tool_call(block) for block in blocks if block.get("type") == "tool_use"]
    if tool_calls:
        reply["tool_calls"] = tool_calls
    reason = finish_reason(message.get("stop_reason"))
    choice = {"index": 0, "message": reply, "logprobs": None, "finish_reason": reason}
    return {
        "id": f"chatcmpl-{message['id']}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": openai_usage(message.get("usage") or {}),
        "system_fingerprint": None,
    }


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    arguments = compact_json(block.get("input") or {})
    return {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}


def openai_error_from_anthropic(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """The status for the client and the OpenAI error object for an Anthropic error reply."""
    error_type, message = _anthropic_error(status, body)
    openai_type = ERROR_TYPES.get(error_type, UNKNOWN_ERROR_TYPE) if error_type else UNKNOWN_ERROR_TYPE
    error = {"message": message, "type": openai_type, "param": None, "code": error_type}
    return STATUS_MAP.get(status, status), error


def _anthropic_error(status: int, body: bytes) -> tuple[str | None, str]:
    """The Anthropic error type (None when the body is not an Anthropic error) and message."""
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        decoded = None
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        error_type = error.get("type")
        message = error["message"] or f"Upstream returned HTTP {status}."
        return (error_type if isinstance(error_type, str) else None), message
    text = body.decode("utf-8", "replace").strip()[:MAX_TEXT_MESSAGE]
    return None, text or f"Upstream returned HTTP {status}."
