"""Gemini generateContent replies, stream events, embeddings and errors translated to OpenAI's shapes."""

from __future__ import annotations

import base64
import json
import math
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FINISH_REASONS: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
"""Gemini `finishReason` → OpenAI `finish_reason`; any other reason (OTHER, LANGUAGE, …) reads as "stop"."""
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "invalid_request_error", 429: "rate_limit_error",
}
TOO_LONG_PHRASE = "exceeds the maximum number of tokens"
"""Gemini's 400 for a prompt over the context window ("The input token count (…) exceeds the maximum number of
tokens allowed (…)"), which routing's context-window fallback knows by the OpenAI code `context_length_exceeded`."""
MAX_TEXT_MESSAGE = 500
IdFactory = Callable[[], str]


def new_call_id() -> str:
    """An OpenAI-style tool call id (Gemini's function calls carry none)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def finish_reason(reason: Any, *, called: bool) -> str | None:
    if called:
        return "tool_calls"
    if not isinstance(reason, str):
        return None
    return FINISH_REASONS.get(reason, "stop")


def openai_usage(meta: Any) -> dict[str, Any]:
    """OpenAI usage for Gemini `usageMetadata`: thoughts count as completion tokens (as OpenAI's reasoning
    tokens do), tool-use prompt tokens as prompt tokens; cached tokens are a part of the prompt's."""
    meta = meta if isinstance(meta, dict) else {}
    thoughts = meta.get("thoughtsTokenCount") or 0
    prompt = (meta.get("promptTokenCount") or 0) + (meta.get("toolUsePromptTokenCount") or 0)
    completion = (meta.get("candidatesTokenCount") or 0) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": meta.get("totalTokenCount") or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": meta.get("cachedContentTokenCount") or 0},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


@dataclass(slots=True)
class Delta:
    """What one candidate's parts add: text, thought text and whole function calls."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def read_parts(candidate: dict[str, Any], new_id: IdFactory, first_index: int = 0) -> Delta:
    """A candidate's parts sorted into text, thoughts and tool calls (numbered from `first_index`)."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    delta = Delta()
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            raise ValueError("a part is not an object")
        if isinstance(part.get("functionCall"), dict):
            delta.tool_calls.append(_tool_call(part, new_id(), first_index + len(delta.tool_calls)))
        elif isinstance(part.get("text"), str):
            (delta.reasoning if part.get("thought") else delta.content).append(part["text"])
    return delta


def _tool_call(part: dict[str, Any], call_id: str, index: int) -> dict[str, Any]:
    call = part["functionCall"]
    arguments = json.dumps(call.get("args") or {}, separators=(",", ":"), ensure_ascii=False)
    out: dict[str, Any] = {"index": index, "id": call_id, "type": "function",
                           "function": {"name": str(call["name"]), "arguments": arguments}}
    if isinstance(part.get("thoughtSignature"), str):  # the key Google's own OpenAI-compatible API uses
        out["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return out


def from_gemini_response(reply: dict[str, Any], *, model: str, created: int,
                         new_id: IdFactory = new_call_id) -> dict[str, Any]:
    """The OpenAI `chat.completion` for a GenerateContentResponse (a blocked prompt: one empty content_filter
    choice)."""
    candidates = reply.get("candidates")
    if not isinstance(candidates, list):
        if not (reply.get("promptFeedback") or {}).get("blockReason"):
            raise ValueError("no candidates")
        candidates = [{"finishReason": "PROHIBITED_CONTENT"}]
    choices = [_choice(candidate, position, new_id) for position, candidate in enumerate(candidates)]
    return {
        "id": f"chatcmpl-{reply.get('responseId') or uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": sorted(choices, key=lambda choice: int(choice["index"])),
        "usage": openai_usage(reply.get("usageMetadata")),
        "system_fingerprint": None,
    }


def _choice(candidate: dict[str, Any], position: int, new_id: IdFactory) -> dict[str, Any]:
    delta = read_parts(candidate, new_id)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(delta.content) if delta.content else None,
                               "refusal": None}
    if delta.reasoning:
        message["reasoning_content"] = "".join(delta.reasoning)
    if delta.tool_calls:
        message["tool_calls"] = [{k: v for k, v in call.items() if k != "index"} for call in delta.tool_calls]
    reason = finish_reason(candidate.get("finishReason"), called=bool(delta.tool_calls)) or "stop"
    return {"index": candidate.get("index", position), "message": message, "logprobs": None,
            "finish_reason": reason}


def from_gemini_embeddings(reply: dict[str, Any], *, model: str, encoding_format: str | None) -> dict[str, Any]:
    """The OpenAI embeddings `list` for a batchEmbedContents reply (usage 0 unless Gemini counted tokens)."""
    data = []
    for index, embedding in enumerate(reply["embeddings"]):
        values = [float(value) for value in embedding["values"]]
        encoded: Any = values
        if encoding_format == "base64":  # what the openai SDK asks for unless told otherwise
            encoded = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = int((reply.get("usageMetadata") or {}).get("promptTokenCount") or 0)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# --- errors ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeminiError:
    """A Gemini error (`{"error": {"code", "message", "status"}}`) in OpenAI's terms."""

    status: int
    message: str
    type: str
    code: str | None
    retry_after: str | None = None
    """Seconds from the error's `RetryInfo.retryDelay`, for when no `Retry-After` header came with it."""


def gemini_error(status: int, body: bytes | dict[str, Any]) -> GeminiError:
    """The error a Gemini error reply (or a stream's error event, `body` decoded) stands for."""
    error = _error_object(body)
    code = error.get("code")
    if isinstance(code, int) and 400 <= code <= 599 and status < 400:
        status = code  # an error event in a stream that started 200
    message = str(error.get("message") or f"Upstream returned HTTP {status}.")
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    gemini_status = error.get("status") if isinstance(error.get("status"), str) else None
    if status == 400 and TOO_LONG_PHRASE in message:
        gemini_status = "context_length_exceeded"
    return GeminiError(status, message, kind, gemini_status, _retry_delay(error.get("details")))


def _error_object(body: bytes | dict[str, Any]) -> dict[str, Any]:
    decoded: Any = body
    if isinstance(body, bytes):
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            text = body.decode("utf-8", "replace").strip()[:MAX_TEXT_MESSAGE]
            return {"message": text} if text else {}
    if isinstance(decoded, list) and decoded:  # some Google front ends wrap the error in a list
        decoded = decoded[0]
    error = decoded.get("error") if isinstance(decoded, dict) else None
    return error if isinstance(error, dict) else {}


def _retry_delay(details: Any) -> str | None:
    for detail in details if isinstance(details, list) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return str(math.ceil(float(delay[:-1])))
            except ValueError:
                return None
    return None
