"""ConverseStream replies (AWS eventstream binary framing) decoded and translated to OpenAI chunks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from botocore.eventstream import EventStreamBuffer, ParserError  # type: ignore[import-untyped]

from sluice.providers.bedrock_response import finish_reason, new_completion_id, openai_usage


class BedrockStreamError(Exception):
    """An exception message in a stream that had already started with HTTP 200 (`:message-type: exception`)."""

    def __init__(self, error_type: str | None, payload: dict[str, Any]) -> None:
        super().__init__(str(payload.get("message", "")))
        self.error_type = error_type
        self.payload = payload


class FramingError(ValueError):
    """Bytes that are not AWS eventstream messages (bad prelude, lengths or CRC)."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One eventstream message: its `:message-type`, its event (or exception) type and its decoded JSON payload."""

    message_type: str
    event_type: str | None
    payload: dict[str, Any]


class EventDecoder:
    """Feeds bytes as they arrive to botocore's EventStreamBuffer and yields each complete message."""

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self.pending = 0
        """Bytes received that are not yet a whole message."""

    def feed(self, data: bytes) -> Iterator[StreamEvent]:
        self._buffer.add_data(data)
        self.pending += len(data)
        try:
            for message in self._buffer:
                self.pending -= int(message.prelude.total_length)
                yield _event(message.headers, bytes(message.payload))
        except ParserError as exc:
            raise FramingError(f"{type(exc).__name__}: {exc}") from exc


def _event(headers: dict[str, Any], payload: bytes) -> StreamEvent:
    message_type = str(headers.get(":message-type") or "event")
    if message_type == "error":  # a generic failure, described in headers rather than the payload
        return StreamEvent("exception", _str(headers.get(":error-code")),
                           {"message": str(headers.get(":error-message") or "")})
    decoded = orjson.loads(payload) if payload else {}
    if not isinstance(decoded, dict):
        raise ValueError("the payload is not a JSON object")
    name = headers.get(":exception-type") if message_type == "exception" else headers.get(":event-type")
    return StreamEvent(message_type, _str(name), decoded)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class BedrockStreamTranslator:
    """Turns one ConverseStream, event by event, into OpenAI chunks; `end` at the body's end closes it."""

    def __init__(self, *, model: str, created: int, include_usage: bool, completion_id: str | None = None) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.id = completion_id or new_completion_id()
        self.started = False
        self.stopped = False
        self.usage: Any = None
        self.tool_index: dict[int, int] = {}
        """Converse content block index → OpenAI tool call index, for the blocks that are tool uses."""
        self._handlers = {"messageStart": self._message_start, "contentBlockStart": self._block_start,
                          "contentBlockDelta": self._block_delta, "messageStop": self._message_stop,
                          "metadata": self._metadata}
        """The events that add chunks or usage; contentBlockStop and unknown events add nothing."""

    def feed(self, event: StreamEvent) -> list[dict[str, Any]]:
        """The chunks for one event; raises BedrockStreamError for an exception message."""
        if event.message_type == "exception":
            raise BedrockStreamError(event.event_type, event.payload)
        handler = self._handlers.get(event.event_type or "")
        return handler(event.payload) if handler is not None else []

    def _message_start(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return self._opening()

    def _block_start(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        tool_use = (payload.get("start") or {}).get("toolUse")
        if not isinstance(tool_use, dict):
            return self._opening()
        index = self.tool_index[int(payload["contentBlockIndex"])] = len(self.tool_index)
        call = {"index": index, "id": str(tool_use["toolUseId"]), "type": "function",
                "function": {"name": str(tool_use["name"]), "arguments": ""}}
        return self._opening() + [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            raise ValueError("contentBlockDelta without a delta")
        out: dict[str, Any] = {}
        if isinstance(delta.get("text"), str) and delta["text"]:
            out["content"] = delta["text"]
        tool_use = delta.get("toolUse")
        if isinstance(tool_use, dict) and isinstance(tool_use.get("input"), str) and tool_use["input"]:
            index = self.tool_index.get(int(payload["contentBlockIndex"]))
            if index is None:
                raise ValueError("a toolUse delta for a block that did not start as a tool use")
            out["tool_calls"] = [{"index": index, "function": {"arguments": tool_use["input"]}}]
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str) and reasoning["text"]:
            out["reasoning_content"] = reasoning["text"]
        return self._opening() + [self._chunk(out)] if out else self._opening()

    def _message_stop(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        reason = payload.get("stopReason")
        reason = "tool_calls" if self.tool_index and reason == "tool_use" else finish_reason(reason)
        self.stopped = True
        return self._opening() + [self._chunk({}, finish_reason=reason)]

    def _metadata(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        if payload.get("usage") is not None:
            self.usage = payload["usage"]
        return []

    def _opening(self) -> list[dict[str, Any]]:
        """The chunk with the role, once, before anything else."""
        if self.started:
            return []
        self.started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def end(self) -> list[dict[str, Any]]:
        """The usage chunk (with `include_usage`) once the body ended; ValueError if no messageStop came."""
        if not self.stopped:
            raise ValueError("the stream ended before messageStop")
        if not self.include_usage:
            return []
        return [{**self._envelope(), "choices": [], "usage": openai_usage(self.usage)}]

    def _envelope(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _chunk(self, delta: dict[str, Any], *, finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._envelope(), "choices": [choice], "usage": None}

