"""Bedrock Converse replies and errors translated to OpenAI's shapes (stop reasons, usage, tool calls)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

STOP_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
"""Converse `stopReason` → OpenAI `finish_reason`; any other reason reads as "stop"."""
ERROR_STATUSES: dict[str, int] = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "ExpiredTokenException": 403,
    "ResourceNotFoundException": 404,
    "ModelNotReadyException": 429,
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "ModelErrorException": 502,
    "ModelStreamErrorException": 502,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "ModelTimeoutException": 504,
}
"""The HTTP status Sluice answers for each Bedrock error type (AWS sends 408 for ModelTimeoutException and 424 for
ModelErrorException, which OpenAI clients would not read as upstream failures)."""
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "invalid_request_error", 429: "rate_limit_error",
}
CREDENTIAL_ERRORS = frozenset({"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"})
TOO_LONG_PHRASES = ("too long", "context window", "maximum context length")
"""A ValidationException about the prompt's length, which routing's context-window fallback knows by the OpenAI
code `context_length_exceeded`."""
MAX_TEXT_MESSAGE = 500


def finish_reason(reason: Any) -> str:
    return STOP_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"


def openai_usage(usage: Any) -> dict[str, Any]:
    """OpenAI usage for Converse `usage`: cache reads and writes are part of the prompt (Converse counts them
    apart from `inputTokens`), cache reads also as `cached_tokens`."""
    usage = usage if isinstance(usage, dict) else {}
    cached = int(usage.get("cacheReadInputTokens") or 0)
    prompt = int(usage.get("inputTokens") or 0) + cached + int(usage.get("cacheWriteInputTokens") or 0)
    completion = int(usage.get("outputTokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("totalTokens") or prompt + completion),
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def new_completion_id() -> str:
    """An OpenAI-style completion id (Converse replies carry none in the body)."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def from_converse_response(reply: dict[str, Any], *, model: str, created: int,
                           completion_id: str | None = None) -> dict[str, Any]:
    """The OpenAI `chat.completion` for a Converse reply; ValueError if it has no `output.message.content`."""
    content = reply["output"]["message"]["content"]
    if not isinstance(content, list):
        raise ValueError("output.message.content is not a list")
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            raise ValueError("a content block is not an object")
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            tool_calls.append(_tool_call(block["toolUse"]))
        elif isinstance(block.get("reasoningContent"), dict):
            text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            if isinstance(text, str):
                reasoning.append(text)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if tool_calls:
        message["tool_calls"] = tool_calls
    reason = "tool_calls" if tool_calls and reply.get("stopReason") == "tool_use" else \
        finish_reason(reply.get("stopReason"))
    return {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reason}],
        "usage": openai_usage(reply.get("usage")),
        "system_fingerprint": None,
    }


def _tool_call(tool_use: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(tool_use["toolUseId"]), "type": "function",
            "function": {"name": str(tool_use["name"]), "arguments": compact_json(tool_use.get("input") or {})}}


# --- errors ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BedrockError:
    """A Bedrock error (HTTP status, `x-amzn-ErrorType`, `{"message"}`) in OpenAI's terms."""

    status: int
    message: str
    type: str
    code: str | None


def error_type_name(value: str | None) -> str | None:
    """`ThrottlingException` from `x-amzn-ErrorType: ThrottlingException:http://internal.amazon.com/…` or a stream's
    `:exception-type: throttlingException`."""
    if not value:
        return None
    name = value.split(":", 1)[0].strip().rsplit("#", 1)[-1]
    return name[:1].upper() + name[1:] if name else None


def bedrock_error(status: int, body: bytes | dict[str, Any], error_type: str | None = None) -> BedrockError:
    """The error a Bedrock error reply (or a stream's exception event, `body` decoded) stands for."""
    decoded = _error_object(body)
    name = error_type_name(error_type) or error_type_name(_text(decoded.get("__type")))
    status = ERROR_STATUSES.get(name or "", status if status >= 400 else 502)
    message = _text(decoded.get("message") or decoded.get("Message")) or f"Bedrock answered HTTP {status}."
    if name in CREDENTIAL_ERRORS:
        message += (" (AWS refused the gateway's credentials: check the bedrock provider's access_key_id, "
                    "secret_access_key, session_token and region.)")
    code = name
    if name == "ValidationException" and any(phrase in message.lower() for phrase in TOO_LONG_PHRASES):
        code = "context_length_exceeded"
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return BedrockError(status, message, kind, code)


def _error_object(body: bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        text = body.decode("utf-8", "replace").strip()[:MAX_TEXT_MESSAGE]
        return {"message": text} if text else {}
    return decoded if isinstance(decoded, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
