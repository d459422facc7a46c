"""Anthropic Messages API stream events translated to OpenAI `chat.completion.chunk` objects."""

from __future__ import annotations

from typing import Any

from sluice.providers.anthropic_response import finish_reason, openai_usage

USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class AnthropicStreamError(Exception):
    """An `error` event in an Anthropic stream that had already started with HTTP 200."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class AnthropicStreamTranslator:
    """Turns one Anthropic stream, event by event, into OpenAI chunks."""

    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.id = "chatcmpl-"
        self.usage: dict[str, Any] = {}
        self.tool_indexes: dict[int, int] = {}  # Anthropic content block index → OpenAI tool call index
        self._with_arguments: set[int] = set()  # the tool blocks that sent a piece of their input
        self._done = False

    @property
    def done(self) -> bool:
        """True once `message_stop` arrived."""
        return self._done

    def feed(self, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The OpenAI chunks for one Anthropic SSE event (often none)."""
        if event == "message_start":
            return self._message_start(data.get("message") or {})
        if event == "content_block_start":
            return self._block_start(data.get("index", 0), data.get("content_block") or {})
        if event == "content_block_delta":
            return self._block_delta(data.get("index", 0), data.get("delta") or {})
        if event == "content_block_stop":
            return self._block_stop(data.get("index", 0))
        if event == "message_delta":
            return self._message_delta(data)
        if event == "message_stop":
            return self._message_stop()
        if event == "error":
            error = data.get("error") or {}
            raise AnthropicStreamError(str(error.get("type", "api_error")), str(error.get("message", "")))
        return []  # ping and event types added after this was written

    def _message_start(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        self.id = f"chatcmpl-{message.get('id', '')}"
        self._update_usage(message.get("usage") or {})
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []  # thinking, redacted_thinking and server-side tool blocks stay upstream
        k = self.tool_indexes[index] = len(self.tool_indexes)
        function = {"name": block.get("name", ""), "arguments": ""}
        return [self._chunk({"tool_calls": [{"index": k, "id": block.get("id"), "type": "function",
                                             "function": function}]})]

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self.tool_indexes:
            self._with_arguments.add(index)
            fragment = {"index": self.tool_indexes[index], "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [fragment]})]
        return []  # thinking, signature and citations deltas have no OpenAI counterpart

    def _block_stop(self, index: int) -> list[dict[str, Any]]:
        """A tool call without input arguments ends as `{}`, as the unstreamed reply has it, not as ""."""
        if index not in self.tool_indexes or index in self._with_arguments:
            return []
        self._with_arguments.add(index)
        fragment = {"index": self.tool_indexes[index], "function": {"arguments": "{}"}}
        return [self._chunk({"tool_calls": [fragment]})]

    def _message_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self._update_usage(data.get("usage") or {})
        reason = finish_reason((data.get("delta") or {}).get("stop_reason")) or "stop"
        return [self._chunk({}, finish_reason=reason)]

    def _message_stop(self) -> list[dict[str, Any]]:
        self._done = True
        if not self.include_usage:
            return []
        return [{**self._envelope(), "choices": [], "usage": openai_usage(self.usage)}]

    def _update_usage(self, usage: dict[str, Any]) -> None:
        """Keep the latest counts: `message_delta` usage is cumulative and may repeat the input counts."""
        self.usage.update({name: usage[name] for name in USAGE_FIELDS if usage.get(name) is not None})
        details = usage.get("output_tokens_details")
        if details is not None:
            self.usage["output_tokens_details"] = details

    def _envelope(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _chunk(self, delta: dict[str, Any], *, finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._envelope(), "choices": [choice], "usage": None}
