"""Gemini streamGenerateContent events (one GenerateContentResponse each) translated to OpenAI chunks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sluice.providers.gemini_response import IdFactory, finish_reason, new_call_id, openai_usage, read_parts


class GeminiStreamError(Exception):
    """An `error` object in a stream that had already started with HTTP 200 (its `code` is an HTTP status)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "")))
        self.error = error


@dataclass(slots=True)
class _Choice:
    tool_calls: int = 0
    finished: bool = False


class GeminiStreamTranslator:
    """Turns one Gemini stream, event by event, into OpenAI chunks; `end` at the body's end closes it."""

    def __init__(self, *, model: str, created: int, include_usage: bool, new_id: IdFactory = new_call_id) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.new_id = new_id
        self.id = ""
        self.usage: Any = None
        self.choices: dict[int, _Choice] = {}

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks for one event: per candidate, its first with the role, then content, then its finish."""
        if isinstance(event.get("error"), dict):
            raise GeminiStreamError(event["error"])
        self.id = self.id or f"chatcmpl-{event.get('responseId') or uuid.uuid4().hex}"
        if event.get("usageMetadata") is not None:
            self.usage = event["usageMetadata"]  # cumulative: the last one counts
        candidates = event.get("candidates")
        if not isinstance(candidates, list):
            if not (event.get("promptFeedback") or {}).get("blockReason"):
                return []
            candidates = [{"finishReason": "PROHIBITED_CONTENT"}]
        chunks: list[dict[str, Any]] = []
        for position, candidate in enumerate(candidates):
            if not isinstance(candidate, dict):
                raise ValueError("a candidate is not an object")
            chunks += self._candidate(int(candidate.get("index", position)), candidate)
        return chunks

    def _candidate(self, index: int, candidate: dict[str, Any]) -> list[dict[str, Any]]:
        state = self.choices.get(index)
        delta: dict[str, Any] = {}
        if state is None:
            state = self.choices[index] = _Choice()
            delta = {"role": "assistant", "content": ""}
        parts = read_parts(candidate, self.new_id, state.tool_calls)
        if "".join(parts.content):  # the last event often has an empty text part carrying a thoughtSignature
            delta["content"] = "".join(parts.content)
        if parts.reasoning:
            delta["reasoning_content"] = "".join(parts.reasoning)
        if parts.tool_calls:
            delta["tool_calls"] = parts.tool_calls  # Gemini sends each call whole: arguments in one delta
            state.tool_calls += len(parts.tool_calls)
        chunks = [self._chunk(index, delta)] if delta else []
        reason = finish_reason(candidate.get("finishReason"), called=state.tool_calls > 0)
        if candidate.get("finishReason") is not None and not state.finished:
            state.finished = True
            chunks.append(self._chunk(index, {}, finish_reason=reason))
        return chunks

    def end(self) -> list[dict[str, Any]]:
        """The usage chunk (with `include_usage`) once the body ended; ValueError if a choice never finished."""
        if not self.choices or not all(state.finished for state in self.choices.values()):
            raise ValueError("the stream ended before a finishReason")
        if not self.include_usage:
            return []
        return [{**self._envelope(), "choices": [], "usage": openai_usage(self.usage)}]

    def _envelope(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _chunk(self, index: int, delta: dict[str, Any], *, finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._envelope(), "choices": [choice], "usage": None}
