"""One OpenAI `chat.completion.chunk` stream translated, chunk by chunk, into Anthropic Messages SSE events.

The event order is Anthropic's: `message_start` and a `ping` (held back until the first chunk arrives, or
`finish`, so that a usage count the first chunk may carry is in it; input tokens read 0 there otherwise and
arrive in `message_delta`), then for each content block `content_block_start`, its deltas and
`content_block_stop`, one block open at a time, then `message_delta` (stop reason and cumulative usage,
including `input_tokens`) and `message_stop`.

Blocks: reasoning deltas (`reasoning_content` or `reasoning`) → a `thinking` block with `thinking_delta`s;
`content` (and `refusal`) → a `text` block with `text_delta`s; each tool call index → its own `tool_use` block
whose argument pieces are `input_json_delta`s. A change of kind closes the open block and opens the next.
Servers send a tool call's pieces together; a piece for a tool call whose block was already closed is still
sent as an `input_json_delta` on that block's index, which is how Anthropic's SDK accumulates input (by index),
rather than lose it. Argument pieces are relayed as they come: unlike `chat_to_message`, the stream cannot
replace arguments that turn out not to be JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.frontdoors.messages_reply import (
    anthropic_error_event,
    anthropic_usage,
    content_text,
    reasoning_text,
    sse_event,
    stop_reason,
)
from sluice.stream_reader import text_piece


class ChatToMessagesStream:
    """Turns one OpenAI chat stream into the Anthropic Messages stream for `message_id`, named `model`."""

    def __init__(self, *, model: str, message_id: str) -> None:
        self.model = model
        self.message_id = message_id
        self._started = False
        self._done = False
        self._blocks = 0  # content blocks started so far; the next block's index
        self._open: tuple[str, int] | None = None  # ("text" | "thinking" | "tool", tool call index) of the open block
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index → Anthropic content block index
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """True once `finish` or `fail` has run: later chunks are ignored."""
        return self._done

    def feed(self, chunk: dict[str, Any]) -> bytes:
        """The Anthropic events for one parsed OpenAI chunk (often one, sometimes none)."""
        if self._done:
            return b""
        text = text_piece(chunk)
        if text is not None and self._open == ("text", 0):  # most chunks: a piece of the open text block
            return self._delta(self._blocks - 1, {"type": "text_delta", "text": text})
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        out = [self._start()]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out.extend(self._choice(choice))
        return b"".join(out)

    def finish(self) -> bytes:
        """Close the open block and end the message: `message_delta` with stop reason and usage, `message_stop`."""
        if self._done:
            return b""
        out = [self._start(), self._close()]
        self._done = True
        reason = stop_reason(self._finish_reason, has_tool_calls=bool(self._tool_blocks))
        delta = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                 "usage": self._final_usage()}
        out.append(sse_event("message_delta", delta))
        out.append(sse_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def fail(self, status: int, message: str) -> bytes:
        """The Anthropic `error` event for a failure after the stream began; nothing is closed, nothing follows."""
        self._done = True
        return anthropic_error_event(status, message)

    # --- message ----------------------------------------------------------------------------------------------

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        usage = anthropic_usage(self._usage) if self._usage else {"input_tokens": 0, "output_tokens": 0}
        message: dict[str, Any] = {"id": self.message_id, "type": "message", "role": "assistant",
                                   "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
                                   "usage": usage}
        return sse_event("message_start", {"type": "message_start", "message": message}) + sse_event(
            "ping", {"type": "ping"})

    def _final_usage(self) -> dict[str, Any]:
        if self._usage is None:
            return {"output_tokens": 0}
        return anthropic_usage(self._usage)

    def _choice(self, choice: dict[str, Any]) -> list[bytes]:
        if isinstance(choice.get("finish_reason"), str):
            self._finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return []
        out: list[bytes] = []
        thinking = reasoning_text(delta)
        if thinking:
            out.extend(self._piece(("thinking", 0), {"type": "thinking_delta", "thinking": thinking}))
        text = content_text(delta.get("content")) or content_text(delta.get("refusal"))
        if text:
            out.extend(self._piece(("text", 0), {"type": "text_delta", "text": text}))
        tool_calls = delta.get("tool_calls")
        for call in tool_calls if isinstance(tool_calls, list) else []:
            if isinstance(call, dict):
                out.extend(self._tool_piece(call))
        return out

    # --- blocks -----------------------------------------------------------------------------------------------

    def _piece(self, kind: tuple[str, int], delta: dict[str, Any]) -> list[bytes]:
        """A delta for a text or thinking block, opening one first unless one of that kind is open."""
        out: list[bytes] = []
        if self._open != kind:
            out.append(self._close())
            block: dict[str, Any] = {"type": "text", "text": ""} if kind[0] == "text" else {
                "type": "thinking", "thinking": "", "signature": ""}
            out.append(self._open_block(kind, block))
        out.append(self._delta(self._blocks - 1, delta))
        return out

    def _tool_piece(self, call: dict[str, Any]) -> list[bytes]:
        index = call.get("index", 0)
        index = index if isinstance(index, int) and not isinstance(index, bool) else 0
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        out: list[bytes] = []
        if index not in self._tool_blocks:
            out.append(self._close())
            call_id = call.get("id")
            block = {"type": "tool_use", "id": call_id if isinstance(call_id, str) and call_id else
                     f"toolu_{self.message_id}_{index}", "name": str(function.get("name") or ""), "input": {}}
            self._tool_blocks[index] = self._blocks
            out.append(self._open_block(("tool", index), block))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(self._delta(self._tool_blocks[index], delta))
        return out

    def _open_block(self, kind: tuple[str, int], block: dict[str, Any]) -> bytes:
        self._open = kind
        self._blocks += 1
        event = {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}
        return sse_event("content_block_start", event)

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        if delta["type"] == "text_delta":  # most of a stream: written directly, a third of the cost of dumps
            return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":' + str(index).encode()
                    + b',"delta":{"type":"text_delta","text":' + orjson.dumps(delta["text"]) + b"}}\n\n")
        return sse_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})

