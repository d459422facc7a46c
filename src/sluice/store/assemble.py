"""Decoding of recorded bodies: JSON replies, and OpenAI SSE streams assembled into one final message."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

_EVENT_END = re.compile(rb"\r?\n\r?\n")
_NUL = b"\\u0000"  # PostgreSQL's JSONB and text refuse NUL
_REPLACEMENT = b"\\ufffd"


def sse_events(chunks: Iterable[bytes]) -> list[Any]:
    """The JSON payloads of the `data:` fields of an SSE stream (chunk boundaries may fall anywhere)."""
    events: list[Any] = []
    for block in _EVENT_END.split(b"".join(chunks).replace(_NUL, _REPLACEMENT)):
        lines = [line[5:].lstrip(b" ") for line in block.splitlines() if line.startswith(b"data:")]
        payload = b"\n".join(lines)
        if not payload or payload == b"[DONE]":
            continue
        try:
            events.append(orjson.loads(payload))
        except orjson.JSONDecodeError:
            continue
    return events


class _Choice:
    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.text: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None

    def add_delta(self, delta: dict[str, Any]) -> None:
        self.role = delta.get("role") or self.role
        if isinstance(delta.get("content"), str):
            self.content.append(delta["content"])
        for call in delta.get("tool_calls") or ():
            slot = self.tool_calls.setdefault(int(call.get("index", 0)), {
                "id": None, "type": "function", "function": {"name": None, "arguments": ""}})
            slot["id"] = call.get("id") or slot["id"]
            slot["type"] = call.get("type") or slot["type"]
            function = call.get("function") or {}
            slot["function"]["name"] = function.get("name") or slot["function"]["name"]
            slot["function"]["arguments"] += function.get("arguments") or ""

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.content) or None}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        return message

    def assembled_text(self) -> str:
        if self.text:
            return "".join(self.text)
        parts = ["".join(self.content)]
        parts.extend(call["function"]["arguments"] for call in self.tool_calls.values())
        return "".join(parts)


def assemble_stream(events: list[Any]) -> tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]:
    """The streamed reply as one `chat.completion` (or `text_completion`), its text, and its usage."""
    choices: dict[int, _Choice] = {}
    head: dict[str, Any] = {}
    usage: dict[str, Any] | None = None
    for event in events:
        if not isinstance(event, dict):
            continue
        if isinstance(event.get("usage"), dict):
            usage = event["usage"]
        if not head and "id" in event:
            head = {key: event[key] for key in ("id", "object", "created", "model") if key in event}
        for raw in event.get("choices") or ():
            choice = choices.setdefault(int(raw.get("index", 0)), _Choice())
            if isinstance(raw.get("delta"), dict):
                choice.add_delta(raw["delta"])
            if isinstance(raw.get("text"), str):
                choice.text.append(raw["text"])
            choice.finish_reason = raw.get("finish_reason") or choice.finish_reason
    if not head and not choices:
        return None, None, usage
    completion = head.get("object") == "text_completion"
    body: dict[str, Any] = {**head, "object": "text_completion" if completion else "chat.completion", "choices": [
        _final_choice(index, choices[index], completion) for index in sorted(choices)]}
    if usage is not None:
        body["usage"] = usage
    text = choices[min(choices)].assembled_text() if choices else None
    return body, text, usage


def _final_choice(index: int, choice: _Choice, completion: bool) -> dict[str, Any]:
    if completion:
        return {"index": index, "text": "".join(choice.text), "finish_reason": choice.finish_reason}
    return {"index": index, "message": choice.message(), "finish_reason": choice.finish_reason}


def reply_text(body: Any) -> str | None:
    """The text of a non-streamed chat or completion reply (first choice), or None."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        return None
    choice = body["choices"][0]
    if not isinstance(choice, dict):
        return None
    if isinstance(choice.get("text"), str):
        return str(choice["text"])
    message = choice.get("message")
    if not isinstance(message, dict):
        return None
    parts = [message["content"]] if isinstance(message.get("content"), str) else []
    parts.extend(str((call.get("function") or {}).get("arguments") or "") for call in message.get("tool_calls") or ())
    return "".join(parts) if parts else None
