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

Events are written from byte templates, compact JSON exactly as `orjson.dumps` writes the same objects: only the
variable pieces (ids, the text of a delta, usage) are encoded, and a block's delta prefix is built once, when the
block opens, since most of a stream is deltas of one block.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.frontdoors.messages_reply import (
    anthropic_error_event,
    anthropic_usage,
    content_text,
    reasoning_text,
    stop_reason,
)
from sluice.stream_reader import text_piece

PING = b'event: ping\ndata: {"type":"ping"}\n\n'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
NO_USAGE_YET = b'{"input_tokens":0,"output_tokens":0}'
NO_USAGE = b'{"output_tokens":0}'
TEXT_BLOCK = b'{"type":"text","text":""}'
THINKING_BLOCK = b'{"type":"thinking","thinking":"","signature":""}'
DELTA_END = b"}}\n\n"
"""What closes a `content_block_delta` event after its encoded value."""
QUOTED_DELTA_END = b'"' + DELTA_END
DELTA_FIELDS = {"text": b'"text_delta","text"', "thinking": b'"thinking_delta","thinking"',
                "tool": b'"input_json_delta","partial_json"'}
"""A block kind's delta: its type and the field that carries the piece."""


def delta_prefix(index: int, kind: str) -> bytes:
    """The bytes of a `content_block_delta` event for block `index` of `kind`, up to its value."""
    return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":' + str(index).encode()
            + b',"delta":{"type":' + DELTA_FIELDS[kind] + b":")


START_HEAD = b'event: message_start\ndata: {"type":"message_start","message":{"id":'
START_MODEL = b',"type":"message","role":"assistant","model":'
START_USAGE = b',"content":[],"stop_reason":null,"stop_sequence":null,"usage":'
FIRST_TEXT_PREFIX = delta_prefix(0, "text")
TEXT_OPENING = (START_USAGE + NO_USAGE_YET + b"}}\n\n" + PING + b'event: content_block_start\ndata: {"type":'
                b'"content_block_start","index":0,"content_block":' + TEXT_BLOCK + b"}\n\n" + FIRST_TEXT_PREFIX + b'"')
"""What follows the model in a stream that opens with text: `message_start` without usage yet, the `ping`, the
first block (text) and its first delta, up to the text."""


class ChatToMessagesStream:
    """Turns one OpenAI chat stream into the Anthropic Messages stream for `message_id`, named `model`."""

    def __init__(self, *, model: str, message_id: str) -> None:
        self.model = model
        self.message_id = message_id
        self._started = False
        self._done = False
        self._blocks = 0  # content blocks started so far; the next block's index
        self._open: tuple[str, int] | None = None  # ("text" | "thinking" | "tool", tool call index) of the open block
        self._prefix = b""  # the open text or thinking block's delta prefix
        self._text_prefix: bytes | None = None  # the same, while the open block is a text block: the fast path
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index → Anthropic content block index
        self._tool_prefixes: dict[int, bytes] = {}  # OpenAI tool call index → its block's delta prefix
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
        prefix = self._text_prefix
        if prefix is not None:  # most chunks: a piece of the open text block
            text = text_piece(chunk)
            if text is not None:
                return prefix + orjson.dumps(text) + DELTA_END
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        out = [self._start()]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out.extend(self._choice(choice))
        return b"".join(out)

    def feed_text(self, text: bytes, finish: str | None = None) -> bytes | None:
        """The `text_delta` for an ordinary text chunk's escaped `text` (see frontdoors/text_chunks.py) while a
        text block is open (or, first in the stream, the message's start and its first block with it), and its
        `finish` reason noted; else None: then the chunk goes to `feed`."""
        prefix = self._text_prefix
        if prefix is not None:
            out = b"".join((prefix, b'"', text, QUOTED_DELTA_END))
        elif not self._started and not self._done:  # what `_start` and `_piece` write, in one piece
            self._started = True
            self._open, self._blocks = ("text", 0), 1
            self._prefix = self._text_prefix = FIRST_TEXT_PREFIX
            out = b"".join((START_HEAD, orjson.dumps(self.message_id), START_MODEL, orjson.dumps(self.model),
                            TEXT_OPENING, text, QUOTED_DELTA_END))
        else:
            return None
        if finish is not None:
            self._finish_reason = finish
        return out

    def finish(self) -> bytes:
        """Close the open block and end the message: `message_delta` with stop reason and usage, `message_stop`."""
        if self._done:
            return b""
        out = self._start() + self._close()
        self._done = True
        reason = stop_reason(self._finish_reason, has_tool_calls=bool(self._tool_blocks))
        usage = NO_USAGE if self._usage is None else orjson.dumps(anthropic_usage(self._usage))
        return b"".join((out, b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":',
                         orjson.dumps(reason), b',"stop_sequence":null},"usage":', usage, b"}\n\n", MESSAGE_STOP))

    def fail(self, status: int, message: str) -> bytes:
        """The Anthropic `error` event for a failure after the stream began; nothing is closed, nothing follows."""
        self._done = True
        self._text_prefix = None
        return anthropic_error_event(status, message)

    # --- message ----------------------------------------------------------------------------------------------

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        usage = orjson.dumps(anthropic_usage(self._usage)) if self._usage else NO_USAGE_YET
        return (START_HEAD + orjson.dumps(self.message_id) + START_MODEL + orjson.dumps(self.model) + START_USAGE
                + usage + b"}}\n\n" + PING)

    def _choice(self, choice: dict[str, Any]) -> list[bytes]:
        if isinstance(choice.get("finish_reason"), str):
            self._finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return []
        out: list[bytes] = []
        thinking = reasoning_text(delta)
        if thinking:
            out.extend(self._piece(("thinking", 0), thinking))
        text = content_text(delta.get("content")) or content_text(delta.get("refusal"))
        if text:
            out.extend(self._piece(("text", 0), text))
        tool_calls = delta.get("tool_calls")
        for call in tool_calls if isinstance(tool_calls, list) else []:
            if isinstance(call, dict):
                out.extend(self._tool_piece(call))
        return out

    # --- blocks -----------------------------------------------------------------------------------------------

    def _piece(self, kind: tuple[str, int], text: str) -> list[bytes]:
        """A delta for a text or thinking block, opening one first unless one of that kind is open."""
        out: list[bytes] = []
        if self._open != kind:
            out.append(self._close())
            out.append(self._open_block(kind, TEXT_BLOCK if kind[0] == "text" else THINKING_BLOCK))
            self._prefix = delta_prefix(self._blocks - 1, kind[0])
            self._text_prefix = self._prefix if kind[0] == "text" else None
        out.append(self._prefix + orjson.dumps(text) + DELTA_END)
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
            self._tool_prefixes[index] = delta_prefix(self._blocks, "tool")
            out.append(self._open_block(("tool", index), orjson.dumps(block)))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(self._tool_prefixes[index] + orjson.dumps(arguments) + DELTA_END)
        return out

    def _open_block(self, kind: tuple[str, int], block: bytes) -> bytes:
        """`content_block_start` for the next block, `block` its encoded `content_block`."""
        self._open = kind
        self._blocks += 1
        return (b'event: content_block_start\ndata: {"type":"content_block_start","index":'
                + str(self._blocks - 1).encode() + b',"content_block":' + block + b"}\n\n")

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        self._text_prefix = None
        return (b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
                + str(self._blocks - 1).encode() + b"}\n\n")
