"""A chat completion chunk stream translated to the OpenAI Responses API's typed server-sent events.

Events are written from byte templates, compact JSON exactly as `orjson.dumps` writes the same objects: an item's
`"item_id":…,"output_index":…` and a text part's delta prefix are built once, when they open, so most chunks cost
one encoded string; the `response` object's fields that echo the request are encoded once (`ResponseBytes`), and
an item's encoding at its `output_item.done` is kept for the final response's `output`.
"""

from __future__ import annotations

import time
from typing import Any, TypeAlias

import orjson

from sluice.frontdoors.responses_reply import (
    Namespaces,
    ResponseBytes,
    as_object,
    function_call_item,
    message_item,
    new_item_id,
    output_text_part,
    reasoning_item,
    refusal_part,
    response_error_object,
    responses_usage,
    status_for,
)
from sluice.frontdoors.responses_request import namespaces_of
from sluice.stream_reader import text_piece

PART_EVENTS = {"output_text": b"response.output_text", "refusal": b"response.refusal"}
"""The event family of each message content part kind (`.delta`, `.done`)."""
DELTA_TAILS = {"output_text": b',"logprobs":[],"sequence_number":', "refusal": b',"sequence_number":'}
"""What follows a part's encoded delta, up to the event's sequence number."""
PART_BYTES = {"output_text": (b'{"type":"output_text","text":', b',"annotations":[],"logprobs":[]}'),
              "refusal": (b'{"type":"refusal","refusal":', b"}")}
"""A content part's JSON (`output_text_part`, `refusal_part`) before and after its encoded text."""
OPENING_CREATED = b'event: response.created\ndata: {"type":"response.created","response":'
OPENING_IN_PROGRESS = (b',"sequence_number":0}\n\nevent: response.in_progress\ndata: {"type":"response.in_progress",'
                       b'"response":')
OPENING_ITEM = (b',"sequence_number":1}\n\nevent: response.output_item.added\ndata: {"type":'
                b'"response.output_item.added","output_index":0,"item":{"type":"message","id":')
OPENING_PART = (b',"role":"assistant","status":"in_progress","content":[]},"sequence_number":2}\n\n'
                b'event: response.content_part.added\ndata: {"type":"response.content_part.added",')
OPENING_DELTA = (b',"content_index":0,"part":' + PART_BYTES["output_text"][0] + b'""' + PART_BYTES["output_text"][1]
                 + b',"sequence_number":3}\n\n')
"""The pieces of a stream's opening events when its first chunk is text, around the `response` object (twice),
the message's id, its `item_id` and `output_index`, and the first delta."""
TEXT_PART = PART_BYTES["output_text"]
SEQUENCE = b',"sequence_number":'
ENDING_TEXT_DONE = b'event: response.output_text.done\ndata: {"type":"response.output_text.done",'
ENDING_LOGPROBS = b',"logprobs":[]' + SEQUENCE
ENDING_PART_DONE = b'}\n\nevent: response.content_part.done\ndata: {"type":"response.content_part.done",'
ENDING_ITEM_DONE = (b'}\n\nevent: response.output_item.done\ndata: {"type":"response.output_item.done",'
                    b'"output_index":0,"item":')
"""The pieces of the ending events of a response whose one item is a message of one output text part."""
CLOSINGS = {kind: b'"' + tail for kind, tail in DELTA_TAILS.items()}
"""What follows a delta's text without its closing quote, up to the event's sequence number."""
KNOWN_ENDS = 1024
NUMBERS = [str(number).encode() for number in range(KNOWN_ENDS)]
"""The first sequence numbers (and indexes) as they are written."""
ENDS = [number + b"}\n\n" for number in NUMBERS]
"""How an event with each of the first sequence numbers ends."""
DELTA_HEADS = {kind: b"event: " + name + b'.delta\ndata: {"type":"' + name + b'.delta",'
               for kind, name in PART_EVENTS.items()}
"""A part's delta event up to its item's `where`."""


def number(value: int) -> bytes:
    """`str(value).encode()`, looked up for the first numbers."""
    return NUMBERS[value] if 0 <= value < KNOWN_ENDS else str(value).encode()


def joined(pieces: list[str]) -> str:
    """The text of `pieces`, which are left as that one piece (a text is joined once, however often it is read)."""
    if len(pieces) == 1:
        return pieces[0]
    text = "".join(pieces)
    pieces[:] = [text]
    return text


class _Item:
    """What every output item has: its id, place, status, the `where` of its events, and its final encoding."""

    __slots__ = ("item_id", "id_bytes", "output_index", "status", "where", "encoded")

    def __init__(self, item_id: str, output_index: int) -> None:
        self.item_id = item_id
        self.id_bytes = orjson.dumps(item_id)
        self.output_index = output_index
        self.status = "in_progress"
        self.where = b"".join((b'"item_id":', self.id_bytes, b',"output_index":', number(output_index)))
        self.encoded: bytes | None = None
        """The item as its `output_item.done` sent it, while nothing changed since."""

    def as_item(self) -> dict[str, Any]:
        raise NotImplementedError

    def as_bytes(self) -> bytes:
        """The item's JSON as it is now."""
        return orjson.dumps(self.as_item())

    def encode(self) -> bytes:
        """The item's JSON, kept from `output_item.done` when it is still the same."""
        return self.encoded if self.encoded is not None else self.as_bytes()


class _Part:
    __slots__ = ("kind", "escaped", "prefix", "opening", "tail", "closing", "encoded")

    def __init__(self, kind: str, item: _Message, content_index: int) -> None:
        self.kind = kind
        self.escaped: list[bytes] = []
        """The text's pieces as JSON strings write them, without their quotes (JSON escapes each character on
        its own, so the pieces joined are the whole text's)."""
        self.prefix = b"".join((DELTA_HEADS[kind], item.where, b',"content_index":', number(content_index),
                                b',"delta":'))
        """A delta event's bytes up to its text."""
        self.opening = self.prefix + b'"'
        self.tail = DELTA_TAILS[kind]
        self.closing = CLOSINGS[kind]
        """What follows a delta's text without its closing quote, up to the event's sequence number."""
        self.encoded: bytes | None = None
        """The part's JSON once it is closed (a closed part never changes)."""

    def text_bytes(self) -> bytes:
        """The text as a JSON string (its pieces joined once, however often it is read)."""
        escaped = self.escaped
        if len(escaped) != 1:
            escaped[:] = [b"".join(escaped)]
        return b'"' + escaped[0] + b'"'

    def text(self) -> str:
        text: str = orjson.loads(self.text_bytes())
        return text

    def as_part(self) -> dict[str, Any]:
        text = self.text()
        return output_text_part(text) if self.kind == "output_text" else refusal_part(text)

    def as_bytes(self, text: bytes) -> bytes:
        """The part's JSON with `text`, its encoded text."""
        head, tail = PART_BYTES[self.kind]
        return head + text + tail


class _Message(_Item):
    __slots__ = ("parts",)

    def __init__(self, item_id: str, output_index: int) -> None:
        super().__init__(item_id, output_index)
        self.parts: list[_Part] = []

    def as_item(self) -> dict[str, Any]:
        return message_item(self.item_id, [part.as_part() for part in self.parts], self.status)

    def as_bytes(self) -> bytes:
        """The item's JSON as `orjson.dumps(self.as_item())` writes it, closed parts not encoded again."""
        parts = [part.encoded if part.encoded is not None else orjson.dumps(part.as_part()) for part in self.parts]
        return (b'{"type":"message","id":' + self.id_bytes + b',"role":"assistant","status":'
                + orjson.dumps(self.status) + b',"content":[' + b",".join(parts) + b"]}")


class _Reasoning(_Item):
    __slots__ = ("pieces",)

    def __init__(self, item_id: str, output_index: int) -> None:
        super().__init__(item_id, output_index)
        self.pieces: list[str] = []

    def as_item(self) -> dict[str, Any]:
        return reasoning_item(self.item_id, joined(self.pieces), self.status)


class _Call(_Item):
    __slots__ = ("call_id", "name", "namespaces", "pieces")

    def __init__(self, item_id: str, output_index: int, call_id: str, name: str, namespaces: Namespaces) -> None:
        super().__init__(item_id, output_index)
        self.call_id = call_id
        self.name = name  # the chat function's name, as the conversation stores it
        self.namespaces = namespaces
        self.pieces: list[str] = []

    def as_item(self) -> dict[str, Any]:
        return function_call_item(self.item_id, self.call_id, self.name, joined(self.pieces), self.status,
                                  self.namespaces)


AnyItem: TypeAlias = _Message | _Reasoning | _Call


class ChatToResponsesStream:
    """One Responses stream: `start`, then `feed` each parsed chat chunk, then `finish` (or `fail`). Each call
    returns the encoded events to send (``event: <type>\\ndata: <json>\\n\\n``); items are emitted one after the
    other, each closed (its `.done` events) when the next one starts."""

    def __init__(self, *, request: dict[str, Any], response_id: str, created_at: int) -> None:
        self._responses = ResponseBytes(request, response_id=response_id, created_at=created_at)
        self._namespaces = namespaces_of(request.get("tools"))
        self._sequence = 0
        self._items: list[AnyItem] = []
        self._current: AnyItem | None = None
        self._text: _Part | None = None  # the open message's last part, while it is output text: the fast path
        self._calls: dict[int, _Call] = {}
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None
        self._started = False
        self._ended = False

    # --- public -----------------------------------------------------------------------------------------------

    def start(self) -> bytes:
        """`response.created` and `response.in_progress`, with an empty output."""
        if self._started:
            return b""
        self._started = True
        response = b'"response":' + self._responses.encode("in_progress", b"[]")
        return self._event(b"response.created", response) + self._event(b"response.in_progress", response)

    def feed(self, chunk: dict[str, Any]) -> bytes:
        """The events for one `chat.completion.chunk` (a chunk holding an `error` object fails the stream)."""
        if self._ended:
            return b""
        part = self._text
        if part is not None or isinstance(self._current, _Message):
            text = text_piece(chunk)
            if text is not None:
                if part is None:  # the open message's last part is a refusal
                    return self._text_delta("output_text", text)
                encoded = orjson.dumps(text)  # most chunks: the open message's text goes on
                part.escaped.append(encoded[1:-1])
                sequence, self._sequence = self._sequence, self._sequence + 1
                return b"".join((part.prefix, encoded, part.tail, ENDS[sequence] if sequence < KNOWN_ENDS
                                 else str(sequence).encode() + b"}\n\n"))
        if isinstance(chunk.get("error"), dict):
            error = chunk["error"]
            return self.fail(str(error.get("message") or "The upstream failed."), error.get("code"))
        out = [self.start()]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out.extend(self._choice_events(choice))
        return b"".join(out)

    def feed_text(self, text: bytes, finish: str | None = None) -> bytes | None:
        """The `output_text.delta` for an ordinary text chunk's escaped `text` (see frontdoors/text_chunks.py)
        while the open message's last part is output text (or, first in the stream, the events that open the
        response, its message and part with it), and its `finish` reason noted; else None: then the chunk goes to
        `feed`."""
        part = self._text
        if part is not None:
            part.escaped.append(text)
            sequence, self._sequence = self._sequence, self._sequence + 1
            out = b"".join((part.opening, text, part.closing, ENDS[sequence] if sequence < KNOWN_ENDS
                            else str(sequence).encode() + b"}\n\n"))
        elif not self._started and not self._ended:
            out = self._opening(text)
        else:
            return None
        if finish is not None:
            self._finish_reason = finish
        return out

    def finish(self) -> bytes:
        """The `.done` events of the open item, then `response.completed` (or `response.incomplete` when the
        reply stopped at the token limit or a content filter) with the whole response and its usage."""
        if self._ended:
            return b""
        status = status_for(self._finish_reason)
        part, item = self._text, self._current
        if part is not None and isinstance(item, _Message) and len(self._items) == 1 and item.parts[0] is part:
            return self._text_ending(item, part, status)  # a reply of text only: most streams
        return self._ending(status)

    def _ending(self, status: str) -> bytes:
        out = self.start()
        out += self._close_current(status)
        self._ended = True
        response = self._responses.encode(status, self._output(), usage=responses_usage(self._usage),
                                          finish_reason=self._finish_reason, completed_at=int(time.time()))
        kind = b"response.completed" if status == "completed" else b"response.incomplete"
        return out + self._event(kind, b'"response":' + response)

    def _text_ending(self, item: _Message, part: _Part, status: str) -> bytes:
        """What `_ending` writes for a response whose one item is a message of one output text part, in one
        piece."""
        self._current = self._text = None
        self._ended = True
        item.status = status
        text = part.text_bytes()
        part.encoded = TEXT_PART[0] + text + TEXT_PART[1]
        item.encoded = encoded = item.as_bytes()
        response = self._responses.encode(status, b"[" + encoded + b"]", usage=responses_usage(self._usage),
                                          finish_reason=self._finish_reason, completed_at=int(time.time()))
        where, sequence = item.where, self._sequence
        self._sequence = sequence + 4
        kind = b"response.completed" if status == "completed" else b"response.incomplete"
        return b"".join((ENDING_TEXT_DONE, where, b',"content_index":0,"text":', text, ENDING_LOGPROBS,
                         number(sequence), ENDING_PART_DONE, where, b',"content_index":0,"part":', part.encoded,
                         SEQUENCE, number(sequence + 1), ENDING_ITEM_DONE, encoded, SEQUENCE,
                         number(sequence + 2), b"}\n\nevent: ", kind, b'\ndata: {"type":"', kind,
                         b'","response":', response, SEQUENCE, number(sequence + 3), b"}\n\n"))

    def fail(self, message: str, code: str | None) -> bytes:
        """`response.failed` (status failed, `error` set, the output so far), then the terminal `error` event, as
        OpenAI and Azure end a failed stream. The `error` event carries the SDK's flat fields and the nested
        `error` object the SDKs raise `APIError` on (openai-python `_streaming.py`: ``data.get("error")``), so a
        failure is an exception to the caller, never a stream that merely stops."""
        if self._ended:
            return b""
        out = self.start()
        self._ended = True
        self._text = None
        for item in self._items:
            if item.status == "in_progress":
                item.status, item.encoded = "incomplete", None
        response = self._responses.encode("failed", self._output(), usage=responses_usage(self._usage),
                                          finish_reason=self._finish_reason,
                                          error=response_error_object(message, code))
        out += self._event(b"response.failed", b'"response":' + response)
        nested = {"type": "server_error", "code": code, "message": message, "param": None}
        fields = orjson.dumps({"code": code, "message": message, "param": None, "error": nested})
        return out + self._event(b"error", fields[1:-1])

    def final_message(self) -> dict[str, Any]:
        """The assistant chat message the stream assembled (text, refusal, reasoning, tool calls)."""
        texts = [part.text() for item in self._items if isinstance(item, _Message) for part in item.parts
                 if part.kind == "output_text"]
        refusals = [part.text() for item in self._items if isinstance(item, _Message)
                    for part in item.parts if part.kind == "refusal"]
        reasoning = [joined(item.pieces) for item in self._items if isinstance(item, _Reasoning)]
        calls = [item for item in self._items if isinstance(item, _Call)]
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        if refusals:
            message["refusal"] = "".join(refusals)
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if calls:
            message["tool_calls"] = [
                {"id": call.call_id, "type": "function",
                 "function": {"name": call.name, "arguments": joined(call.pieces)}}
                for call in calls
            ]
        return message

    # --- deltas -----------------------------------------------------------------------------------------------

    def _choice_events(self, choice: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        delta = as_object(choice.get("delta"))
        for name in ("reasoning_content", "reasoning"):
            if isinstance(delta.get(name), str) and delta[name]:
                out.append(self._reasoning_delta(delta[name]))
                break
        for kind, name in (("output_text", "content"), ("refusal", "refusal")):
            if isinstance(delta.get(name), str) and delta[name]:
                out.append(self._text_delta(kind, delta[name]))
        for position, call in enumerate(delta.get("tool_calls") or []):
            if isinstance(call, dict):
                out.append(self._tool_call_delta(call, position))
        if choice.get("finish_reason"):
            self._finish_reason = str(choice["finish_reason"])
        return out

    def _reasoning_delta(self, text: str) -> bytes:
        out = b""
        item = self._current
        if not isinstance(item, _Reasoning):
            out += self._close_current("completed")
            item = _Reasoning(new_item_id("rs"), len(self._items))
            out += self._open(item)
            out += self._event(b"response.content_part.added",
                               item.where + b',"content_index":0,"part":{"type":"reasoning_text","text":""}')
        item.pieces.append(text)
        return out + self._event(b"response.reasoning_text.delta",
                                 item.where + b',"content_index":0,"delta":' + orjson.dumps(text))

    def _text_delta(self, kind: str, text: str) -> bytes:
        out = b""
        item = self._current
        if not isinstance(item, _Message):
            out += self._close_current("completed")
            item = _Message(new_item_id("msg"), len(self._items))
            out += self._open(item)
        if not item.parts or item.parts[-1].kind != kind:
            if item.parts:
                out += self._close_part(item)
            index = len(item.parts)
            part = _Part(kind, item, index)
            item.parts.append(part)
            self._text = part if kind == "output_text" else None
            out += self._event(b"response.content_part.added", item.where + b',"content_index":'
                               + str(index).encode() + b',"part":' + part.as_bytes(b'""'))
        part = item.parts[-1]
        encoded = orjson.dumps(text)
        part.escaped.append(encoded[1:-1])
        sequence, self._sequence = self._sequence, self._sequence + 1
        return out + part.prefix + encoded + part.tail + str(sequence).encode() + b"}\n\n"

    def _opening(self, text: bytes) -> bytes:
        """What `start` and `_text_delta` write for a stream whose first chunk is text (escaped `text`), in one
        piece: `response.created`, `response.in_progress`, the message's `output_item.added`, its output text
        part's `content_part.added`, the first delta."""
        self._started = True
        item = _Message(new_item_id("msg"), 0)
        part = _Part("output_text", item, 0)
        part.escaped.append(text)
        item.parts.append(part)
        self._items.append(item)
        self._current, self._text = item, part
        self._sequence = 5
        response = self._responses.opening()
        return b"".join((OPENING_CREATED, response, OPENING_IN_PROGRESS, response, OPENING_ITEM, item.id_bytes,
                         OPENING_PART, item.where, OPENING_DELTA, part.opening, text, part.closing, b"4}\n\n"))

    def _tool_call_delta(self, call: dict[str, Any], position: int) -> bytes:
        out = b""
        index = call["index"] if isinstance(call.get("index"), int) else position
        function = as_object(call.get("function"))
        item = self._calls.get(index)
        if item is None:
            out += self._close_current("completed")
            given_id, given_name = call.get("id"), function.get("name")
            call_id = given_id if isinstance(given_id, str) and given_id else new_item_id("call")
            name = given_name if isinstance(given_name, str) else ""
            item = _Call(new_item_id("fc"), len(self._items), call_id, name, self._namespaces)
            self._calls[index] = item
            out += self._open(item)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.pieces.append(arguments)
            item.encoded = None
            # A fragment for a call already closed (an upstream interleaving calls) reaches only the final response.
            if item is self._current:
                out += self._event(b"response.function_call_arguments.delta",
                                   item.where + b',"delta":' + orjson.dumps(arguments))
        return out

    # --- items ------------------------------------------------------------------------------------------------

    def _open(self, item: AnyItem) -> bytes:
        self._items.append(item)
        self._current = item
        return self._event(b"response.output_item.added", b'"output_index":' + str(item.output_index).encode()
                           + b',"item":' + item.as_bytes())

    def _close_current(self, status: str) -> bytes:
        """The `.done` events of the open item, which ends with `status`."""
        item = self._current
        if item is None:
            return b""
        self._current = self._text = None
        item.status = status
        if isinstance(item, _Message):
            out = self._close_part(item)
        elif isinstance(item, _Reasoning):
            text = orjson.dumps(joined(item.pieces))
            out = self._event(b"response.reasoning_text.done", item.where + b',"content_index":0,"text":' + text)
            out += self._event(b"response.content_part.done", item.where
                               + b',"content_index":0,"part":{"type":"reasoning_text","text":' + text + b"}")
        else:
            out = self._event(b"response.function_call_arguments.done",
                              item.where + b',"arguments":' + orjson.dumps(joined(item.pieces)))
        item.encoded = item.as_bytes()
        return out + self._event(b"response.output_item.done", b'"output_index":' + str(item.output_index).encode()
                                 + b',"item":' + item.encoded)

    def _close_part(self, item: _Message) -> bytes:
        part = item.parts[-1]
        text = part.text_bytes()
        where = item.where + b',"content_index":' + str(len(item.parts) - 1).encode()
        if part.kind == "output_text":
            done = self._event(b"response.output_text.done", where + b',"text":' + text + b',"logprobs":[]')
        else:
            done = self._event(b"response.refusal.done", where + b',"refusal":' + text)
        part.encoded = part.as_bytes(text)
        return done + self._event(b"response.content_part.done", where + b',"part":' + part.encoded)

    # --- encoding ---------------------------------------------------------------------------------------------

    def _output(self) -> bytes:
        """The response's `output`: every item so far."""
        return b"[" + b",".join([item.encode() for item in self._items]) + b"]"

    def _event(self, kind: bytes, fields: bytes) -> bytes:
        """One event: `fields` are its JSON members after `type` and before `sequence_number`."""
        sequence, self._sequence = self._sequence, self._sequence + 1
        return (b"event: " + kind + b'\ndata: {"type":"' + kind + b'",' + fields + b',"sequence_number":'
                + str(sequence).encode() + b"}\n\n")
