"""A chat completion chunk stream translated to the OpenAI Responses API's typed server-sent events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson

from sluice.frontdoors.responses_reply import (
    as_object,
    function_call_item,
    message_item,
    new_item_id,
    output_text_part,
    reasoning_item,
    refusal_part,
    response_error_object,
    response_object,
    responses_usage,
    status_for,
)
from sluice.stream_reader import text_piece

PART_EVENTS = {"output_text": "response.output_text", "refusal": "response.refusal"}
"""The event family of each message content part kind (`.delta`, `.done`)."""


@dataclass(slots=True)
class _Part:
    kind: str
    text: str = ""

    def as_part(self) -> dict[str, Any]:
        return output_text_part(self.text) if self.kind == "output_text" else refusal_part(self.text)


@dataclass(slots=True)
class _Message:
    item_id: str
    output_index: int
    parts: list[_Part] = field(default_factory=list)
    status: str = "in_progress"

    def as_item(self) -> dict[str, Any]:
        return message_item(self.item_id, [part.as_part() for part in self.parts], self.status)


@dataclass(slots=True)
class _Reasoning:
    item_id: str
    output_index: int
    text: str = ""
    status: str = "in_progress"

    def as_item(self) -> dict[str, Any]:
        return reasoning_item(self.item_id, self.text, self.status)


@dataclass(slots=True)
class _Call:
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str = ""
    status: str = "in_progress"

    def as_item(self) -> dict[str, Any]:
        return function_call_item(self.item_id, self.call_id, self.name, self.arguments, self.status)


_Item: TypeAlias = _Message | _Reasoning | _Call


class ChatToResponsesStream:
    """One Responses stream: `start`, then `feed` each parsed chat chunk, then `finish` (or `fail`). Each call
    returns the encoded events to send (``event: <type>\\ndata: <json>\\n\\n``); items are emitted one after the
    other, each closed (its `.done` events) when the next one starts."""

    def __init__(self, *, request: dict[str, Any], response_id: str, created_at: int) -> None:
        self._request = request
        self._response_id = response_id
        self._created_at = created_at
        self._sequence = 0
        self._items: list[_Item] = []
        self._current: _Item | None = None
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
        response = self._response("in_progress")
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def feed(self, chunk: dict[str, Any]) -> bytes:
        """The events for one `chat.completion.chunk` (a chunk holding an `error` object fails the stream)."""
        if self._ended:
            return b""
        text = text_piece(chunk)
        if text is not None and isinstance(self._current, _Message) and self._current.parts:
            return self._text_delta("output_text", text)  # most chunks: the open message's text goes on
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

    def finish(self) -> bytes:
        """The `.done` events of the open item, then `response.completed` (or `response.incomplete` when the
        reply stopped at the token limit or a content filter) with the whole response and its usage."""
        if self._ended:
            return b""
        out = [self.start()]
        status = status_for(self._finish_reason)
        out.append(self._close_current(status))
        self._ended = True
        response = self._response(status, completed_at=int(time.time()))
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, response=response))
        return b"".join(out)

    def fail(self, message: str, code: str | None) -> bytes:
        """`response.failed` (status failed, `error` set, the output so far), then the terminal `error` event, as
        OpenAI and Azure end a failed stream. The `error` event carries the SDK's flat fields and the nested
        `error` object the SDKs raise `APIError` on (openai-python `_streaming.py`: ``data.get("error")``), so a
        failure is an exception to the caller, never a stream that merely stops."""
        if self._ended:
            return b""
        out = [self.start()]
        self._ended = True
        for item in self._items:
            if item.status == "in_progress":
                item.status = "incomplete"
        response = self._response("failed", error=response_error_object(message, code))
        out.append(self._event("response.failed", response=response))
        nested = {"type": "server_error", "code": code, "message": message, "param": None}
        out.append(self._event("error", code=code, message=message, param=None, error=nested))
        return b"".join(out)

    def final_message(self) -> dict[str, Any]:
        """The assistant chat message the stream assembled (text, refusal, reasoning, tool calls)."""
        texts = [part.text for item in self._items if isinstance(item, _Message) for part in item.parts
                 if part.kind == "output_text"]
        refusals = [part.text for item in self._items if isinstance(item, _Message) for part in item.parts
                    if part.kind == "refusal"]
        reasoning = [item.text for item in self._items if isinstance(item, _Reasoning)]
        calls = [item for item in self._items if isinstance(item, _Call)]
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        if refusals:
            message["refusal"] = "".join(refusals)
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if calls:
            message["tool_calls"] = [
                {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
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
            out += self._event("response.content_part.added", item_id=item.item_id, output_index=item.output_index,
                               content_index=0, part={"type": "reasoning_text", "text": ""})
        item.text += text
        return out + self._event("response.reasoning_text.delta", item_id=item.item_id,
                                 output_index=item.output_index, content_index=0, delta=text)

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
            item.parts.append(_Part(kind))
            out += self._event("response.content_part.added", item_id=item.item_id, output_index=item.output_index,
                               content_index=len(item.parts) - 1, part=item.parts[-1].as_part())
        part = item.parts[-1]
        part.text += text
        if kind == "output_text":  # most of a stream: written directly, as `_event` would, at half its cost
            sequence, self._sequence = self._sequence, self._sequence + 1
            return out + (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":'
                          + orjson.dumps(item.item_id) + b',"output_index":' + str(item.output_index).encode()
                          + b',"content_index":' + str(len(item.parts) - 1).encode() + b',"delta":'
                          + orjson.dumps(text) + b',"logprobs":[],"sequence_number":' + str(sequence).encode()
                          + b"}\n\n")
        fields: dict[str, Any] = {}
        return out + self._event(f"{PART_EVENTS[kind]}.delta", item_id=item.item_id, output_index=item.output_index,
                                 content_index=len(item.parts) - 1, delta=text, **fields)

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
            item = _Call(new_item_id("fc"), len(self._items), call_id, name)
            self._calls[index] = item
            out += self._open(item)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.arguments += arguments
            # A fragment for a call already closed (an upstream interleaving calls) reaches only the final response.
            if item is self._current:
                out += self._event("response.function_call_arguments.delta", item_id=item.item_id,
                                   output_index=item.output_index, delta=arguments)
        return out

    # --- items ------------------------------------------------------------------------------------------------

    def _open(self, item: _Item) -> bytes:
        self._items.append(item)
        self._current = item
        return self._event("response.output_item.added", output_index=item.output_index, item=item.as_item())

    def _close_current(self, status: str) -> bytes:
        """The `.done` events of the open item, which ends with `status`."""
        item = self._current
        if item is None:
            return b""
        self._current = None
        item.status = status
        out = b""
        where: dict[str, Any] = {"item_id": item.item_id, "output_index": item.output_index}
        if isinstance(item, _Message):
            out += self._close_part(item)
        elif isinstance(item, _Reasoning):
            out += self._event("response.reasoning_text.done", **where, content_index=0, text=item.text)
            out += self._event("response.content_part.done", **where, content_index=0,
                               part={"type": "reasoning_text", "text": item.text})
        else:
            out += self._event("response.function_call_arguments.done", **where, arguments=item.arguments)
        return out + self._event("response.output_item.done", output_index=item.output_index, item=item.as_item())

    def _close_part(self, item: _Message) -> bytes:
        part = item.parts[-1]
        where: dict[str, Any] = {"item_id": item.item_id, "output_index": item.output_index,
                                 "content_index": len(item.parts) - 1}
        if part.kind == "output_text":
            done = self._event("response.output_text.done", **where, text=part.text, logprobs=[])
        else:
            done = self._event("response.refusal.done", **where, refusal=part.text)
        return done + self._event("response.content_part.done", **where, part=part.as_part())

    # --- encoding ---------------------------------------------------------------------------------------------

    def _response(self, status: str, *, error: dict[str, Any] | None = None,
                  completed_at: int | None = None) -> dict[str, Any]:
        return response_object(
            self._request, response_id=self._response_id, created_at=self._created_at, status=status,
            output=[item.as_item() for item in self._items], usage=responses_usage(self._usage) if self._ended
            else None, finish_reason=self._finish_reason, error=error, completed_at=completed_at,
        )

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
