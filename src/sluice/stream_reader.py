"""The one reader of OpenAI chat/completions replies: an SSE stream decoded into the final message it adds up to
(content, tool calls, finish reason, usage), the text of a reply, and the usage found cheaply in raw bytes.

The request log's writer and the span exporter assemble streams here, off the request path; the worker only takes
the usage (`stream_usage`, `reply_usage`), which reads a few hundred bytes, not the whole reply.

In OpenAI's chunk format a tool call opens with a delta carrying its `index`, `id`, `type` and `function.name`;
the deltas after it carry only `index` and a piece of `function.arguments`, concatenated in order. So the name is
set once, by the first delta of the call that has one: servers that repeat it in later deltas do not lengthen it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

_NUL = b"\\u0000"  # PostgreSQL's JSONB and text refuse NUL
_REPLACEMENT = b"\\ufffd"
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_TAIL_BYTES = 2048
"""A stream's usage comes in its last events (the `include_usage` chunk before `[DONE]`, or the last of the
cumulative ones some servers send with every chunk); chunks may split events anywhere."""
_HEAD = ("id", "object", "created", "model")
_SMALL_REPLY = 16384
"""Replies up to this size are decoded whole to find their usage (orjson: ~2 us for a 1 KB chat reply)."""
_OBJECT = json.JSONDecoder()


def sse_events(chunks: Iterable[bytes]) -> list[Any]:
    """The JSON payloads of the `data:` fields of an SSE stream (chunk boundaries may fall anywhere)."""
    events: list[Any] = []
    raw = b"".join(chunks).replace(_NUL, _REPLACEMENT)
    if b"\r" in raw:  # the spec's other line ends, CRLF and a lone CR
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    for block in raw.split(b"\n\n"):
        if block[:6] == b"data: " and b"\n" not in block:  # the usual event: one `data:` line
            payload = block[6:]
        else:
            payload = b"\n".join([line[5:].lstrip(b" ") for line in block.splitlines() if line.startswith(b"data:")])
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
        self.refusal: list[str] = []
        self.text: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None

    def add_delta(self, delta: dict[str, Any]) -> None:
        role, content, refusal, calls = delta.get("role"), delta.get("content"), delta.get("refusal"), \
            delta.get("tool_calls")
        if role:
            self.role = role
        if type(content) is str:
            self.content.append(content)
        if type(refusal) is str:
            self.refusal.append(refusal)
        for call in calls or ():
            if type(call) is dict:
                self._add_call(call)

    def _add_call(self, call: dict[str, Any]) -> None:
        found = call.get("function")
        function: dict[str, Any] = found if isinstance(found, dict) else {}
        index = call.get("index")
        if not isinstance(index, int):  # not OpenAI's format: a delta with an id or a name opens the next call
            opens = call.get("id") or function.get("name") or not self.tool_calls
            index = max(self.tool_calls, default=-1) + (1 if opens else 0)
        slot = self.tool_calls.get(index)
        if slot is None:
            slot = self.tool_calls[index] = {"id": None, "type": "function", "function": {"name": None,
                                                                                        "arguments": ""}}
        slot["id"] = slot["id"] or call.get("id") or None
        slot["type"] = call.get("type") or slot["type"]
        slot["function"]["name"] = slot["function"]["name"] or function.get("name") or None
        if isinstance(function.get("arguments"), str):
            slot["function"]["arguments"] += function["arguments"]

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.content) or None}
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        return message

    def assembled_text(self) -> str:
        if self.text:
            return "".join(self.text)
        parts = ["".join(self.content)]
        parts.extend(self.tool_calls[index]["function"]["arguments"] for index in sorted(self.tool_calls))
        return "".join(parts)


def assemble_stream(events: list[Any]) -> tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]:
    """The streamed reply (`sse_events`) as one `chat.completion` (or `text_completion`), as a non-streamed reply
    would carry it (plus the `error` a failed stream ended with), its text, and its usage: what the last event
    with a `usage` key says (OpenAI's `include_usage` chunk, after chunks with `"usage": null`)."""
    choices: dict[int, _Choice] = {}
    head: dict[str, Any] = {}
    usage: dict[str, Any] | None = None
    error: Any = None
    for event in events:
        if not isinstance(event, dict):
            continue
        if "usage" in event:
            usage = event["usage"] if isinstance(event["usage"], dict) else None
        if "error" in event:
            error = event["error"]
        if len(head) < len(_HEAD):
            head.update({key: event[key] for key in _HEAD if key in event and key not in head})
        for raw in event.get("choices") or ():
            if not isinstance(raw, dict):
                continue
            index = int(raw.get("index") or 0)
            choice = choices.get(index)
            if choice is None:
                choice = choices[index] = _Choice()
            delta, text = raw.get("delta"), raw.get("text")
            if type(delta) is dict:
                choice.add_delta(delta)
            if type(text) is str:
                choice.text.append(text)
            choice.finish_reason = raw.get("finish_reason") or choice.finish_reason
    if not head and not choices and error is None:
        return None, None, usage
    completion = head.get("object") == "text_completion"
    body: dict[str, Any] = {**head, "object": "text_completion" if completion else "chat.completion", "choices": [
        _final_choice(index, choices[index], completion) for index in sorted(choices)]}
    if usage is not None:
        body["usage"] = usage
    if error is not None:
        body["error"] = error
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


def stream_usage(chunks: Sequence[bytes]) -> dict[str, Any] | None:
    """The usage `assemble_stream` finds (what the last `usage` key says), read from the stream's last 2 KB: the
    event that carries it is decoded, nothing else."""
    size, start = 0, len(chunks)
    while start and size < _TAIL_BYTES:
        start -= 1
        size += len(chunks[start])
    tail = chunks[-1] if start == len(chunks) - 1 else b"".join(chunks[start:])
    at = tail.rfind(b'"usage"')
    if at < 0 or _USAGE.match(tail, at) is None:  # none, or `"usage": null`
        return None
    begin, end = tail.rfind(b"data:", 0, at), tail.find(b"\n", at)
    try:
        event = orjson.loads(tail[begin + 5:end if end >= 0 else len(tail)])
    except orjson.JSONDecodeError:  # an event over several `data:` lines, or cut by the tail's start
        return usage_object(tail, at)
    usage = event.get("usage") if type(event) is dict else None
    return usage if type(usage) is dict else usage_object(tail, at)


def reply_usage(body: bytes) -> dict[str, Any] | None:
    """The `usage` object of a JSON reply; a large reply (embeddings) is not decoded, only its usage object."""
    if len(body) <= _SMALL_REPLY:
        try:
            reply = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        usage = reply.get("usage") if type(reply) is dict else None
        return usage if type(usage) is dict else None
    return usage_object(body, body.rfind(b'"usage"'))


def usage_object(raw: bytes, at: int) -> dict[str, Any] | None:
    """The object of the `"usage": {` key at `at`, decoded exactly (details included). Outside JSON strings (where
    quotes are escaped) the bytes `"usage"` are only ever a key, so the last of them is the reply's own."""
    match = _USAGE.match(raw, at) if at >= 0 else None
    if match is None:
        return None
    begin = match.end() - 1
    end = raw.find(b"}", begin)
    while end >= 0 and raw.count(b"{", begin, end) != raw.count(b"}", begin, end) + 1:
        end = raw.find(b"}", end + 1)  # a details object closed: the usage object goes on
    try:
        usage = orjson.loads(raw[begin:end + 1])
    except orjson.JSONDecodeError:  # a brace inside a string: decode it the slow way
        try:
            usage, _ = _OBJECT.raw_decode(raw[begin:begin + 8192].decode("utf-8", "replace"))
        except ValueError:
            return None
    return usage if isinstance(usage, dict) else None


def text_piece(chunk: dict[str, Any]) -> str | None:
    """The text of a chunk that is only a piece of text for choice 0 (no role, finish, usage, tool call or other
    choice): the usual chunk, which the translators answer without their general path; None for any other."""
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1 or chunk.get("usage") is not None:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("index", 0) != 0 or choice.get("finish_reason") is not None:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict or len(delta) != 1:
        return None
    text = delta.get("content")
    return text if type(text) is str and text else None
