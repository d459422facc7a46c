"""The built-in offline provider: deterministic echo replies, streams, tool calls, embeddings and usage."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from sluice.config import MockProviderConfig
from sluice.errors import InvalidRequest
from sluice.providers.base import JSONObject, UpstreamRequest

DEFAULT_REPLY = "Hello from Sluice's mock provider."
DEFAULT_DIMENSIONS = 16


class MockProvider:
    """Answers from the request itself: the reply echoes the last user message."""

    def __init__(self, name: str, config: MockProviderConfig) -> None:
        self.name = name
        self.latency = config.latency_ms / 1000
        self.chunk_delay = config.chunk_delay_ms / 1000
        self.chunks = config.chunks

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def send(self, request: UpstreamRequest) -> bytes:
        if self.latency:
            await asyncio.sleep(self.latency)
        if request.operation == "embeddings":
            return orjson.dumps(embeddings_reply(request.body))
        if request.operation == "completions":
            return orjson.dumps(completion_reply(request.body))
        return orjson.dumps(chat_reply(request.body))

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[bytes, None]:
        if request.operation == "embeddings":
            raise InvalidRequest("Embeddings cannot be streamed.", param="stream")
        return self._events(request)

    async def _events(self, request: UpstreamRequest) -> AsyncGenerator[bytes, None]:
        if self.latency:
            await asyncio.sleep(self.latency)
        if request.operation == "completions":
            chunks = completion_chunks(request.body, self.chunks, request.include_usage)
        else:
            chunks = chat_chunks(request.body, self.chunks, request.include_usage)
        for index, chunk in enumerate(chunks):
            if index and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: [DONE]\n\n"


def last_user_text(messages: Any) -> str:
    """The text of the last user message, or a fixed greeting when there is none."""
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return content_text(message.get("content"))
    return DEFAULT_REPLY


def content_text(content: Any) -> str:
    """The text of a message's content, string or list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words."""
    return len(text.split())


def _usage(prompt: int, completion: int) -> JSONObject:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _prompt_tokens(body: JSONObject) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return count_tokens(str(body.get("prompt", "")))
    return sum(count_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, dict))


def _reply_id(body: JSONObject, prefix: str) -> str:
    return prefix + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


def _forced_tool(body: JSONObject) -> str | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        return str(choice.get("function", {}).get("name"))
    if choice == "required":
        return str(tools[0].get("function", {}).get("name"))
    return None


def _tool_call(body: JSONObject, name: str) -> JSONObject:
    arguments = orjson.dumps({"input": last_user_text(body.get("messages"))}).decode()
    return {"id": _reply_id(body, "call_")[:29], "type": "function", "function": {"name": name, "arguments": arguments}}


def chat_reply(body: JSONObject) -> JSONObject:
    """A complete `chat.completion` answering `body`."""
    tool = _forced_tool(body)
    text = last_user_text(body.get("messages"))
    message: JSONObject = {"role": "assistant", "content": None if tool else text, "refusal": None}
    if tool:
        message["tool_calls"] = [_tool_call(body, tool)]
    completion = count_tokens(message["tool_calls"][0]["function"]["arguments"] if tool else text)
    return {
        "id": _reply_id(body, "chatcmpl-mock-"), "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model"), "system_fingerprint": "sluice-mock",
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": "tool_calls" if tool else "stop"}],
        "usage": _usage(_prompt_tokens(body), completion),
    }


def split_text(text: str, parts: int) -> list[str]:
    """Split `text` into at most `parts` pieces that concatenate back to it."""
    size = max(1, -(-len(text) // parts))
    return [text[start:start + size] for start in range(0, len(text), size)] or [""]


def chat_chunks(body: JSONObject, parts: int, include_usage: bool) -> list[JSONObject]:
    """The `chat.completion.chunk` objects that stream the same answer as `chat_reply`."""
    reply = chat_reply(body)
    message, finish = reply["choices"][0]["message"], reply["choices"][0]["finish_reason"]
    base = {"id": reply["id"], "object": "chat.completion.chunk", "created": reply["created"],
            "model": reply["model"], "system_fingerprint": "sluice-mock"}

    def chunk(delta: JSONObject, finish_reason: str | None = None) -> JSONObject:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**base, "choices": [choice], "usage": None}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if "tool_calls" in message:
        call = message["tool_calls"][0]
        head = {"index": 0, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}
        chunks.append(chunk({"tool_calls": [head]}))
        for piece in split_text(call["function"]["arguments"], parts):
            chunks.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    else:
        chunks.extend(chunk({"content": piece}) for piece in split_text(message["content"], parts))
    chunks.append(chunk({}, finish))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": reply["usage"]})
    return chunks


def completion_reply(body: JSONObject) -> JSONObject:
    """A legacy `text_completion` echoing the prompt."""
    prompt = body.get("prompt", "")
    text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt)) if isinstance(prompt, list) else ""
    return {
        "id": _reply_id(body, "cmpl-mock-"), "object": "text_completion", "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(count_tokens(text), count_tokens(text)),
    }


def completion_chunks(body: JSONObject, parts: int, include_usage: bool) -> list[JSONObject]:
    """The streamed form of `completion_reply`."""
    reply = completion_reply(body)
    base = {"id": reply["id"], "object": "text_completion", "created": reply["created"], "model": reply["model"]}
    chunks = [{**base, "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}]}
              for piece in split_text(reply["choices"][0]["text"], parts)]
    chunks.append({**base, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": reply["usage"]})
    return chunks


def embed(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from `text`."""
    seed = hashlib.sha256(text.encode()).digest()
    raw = [(seed[i % len(seed)] + i * 31) % 255 / 127.0 - 1.0 for i in range(dimensions)]
    norm = sum(value * value for value in raw) ** 0.5 or 1.0
    return [round(value / norm, 6) for value in raw]


def embeddings_reply(body: JSONObject) -> JSONObject:
    """An embeddings `list` with one deterministic vector per input."""
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else [inputs]
    dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
    data = []
    for index, item in enumerate(items):
        vector = embed(str(item), int(dimensions))
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(count_tokens(str(item)) for item in items)
    return {"object": "list", "data": data, "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
