"""The built-in offline provider: deterministic model-like replies, streams, tool calls, embeddings and usage."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import re
import secrets
import struct
import time
import zlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.config import MockProviderConfig
from sluice.errors import InvalidRequest
from sluice.providers.base import JSONObject, UpstreamRequest
from sluice.providers.mock_schema import value_for

DEFAULT_REPLY = "Hello from Sluice's mock provider."
DEFAULT_DIMENSIONS = 16
MODEL_LIKE_FIELDS = frozenset({"response_format", "tools", "n", "logprobs", "stop", "max_tokens",
                               "max_completion_tokens"})
"""A request with none of these (and not answering a tool call) gets the plain echo."""
_UNCONSTRAINING = frozenset({"type", "title", "description", "$schema"})
_ALTERNATIVES = ("the", "a", "and", "of", "to", "in", "is", "it", "that", "for", "on", "with", "as", "I", "you",
                 "this", "be", "at", "or", "not")
_PROCESS_TAG = secrets.token_hex(3)
_SERIALS = itertools.count(1)


class MockProvider:
    """Answers from the request itself, like a model would: by default it echoes the last user message
    (docs/mock.md)."""

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


def _next_id(prefix: str) -> str:
    """A distinct id for each reply (a per-process tag and counter): only the content is deterministic."""
    return f"{prefix}{_PROCESS_TAG}{next(_SERIALS):010x}"


@dataclass(slots=True)
class Answer:
    """One choice: its text or tool calls, why it ended, and its tokens' log probabilities when asked for."""

    content: str | None
    finish_reason: str
    tool_calls: list[JSONObject] = field(default_factory=list)
    logprobs: list[JSONObject] | None = None

    def tokens(self) -> int:
        return count_tokens(self.content or "") + sum(count_tokens(call["function"]["arguments"])
                                                      for call in self.tool_calls)


@dataclass(slots=True)
class Reply:
    """What both `chat_reply` and `chat_chunks` send: one id, one set of answers, one usage."""

    id: str
    created: int
    model: Any
    answers: list[Answer]
    usage: JSONObject
    logprobs: bool


def plan_reply(body: JSONObject) -> Reply:
    """The answers to a chat request: deterministic content, a fresh id."""
    reply_id = _next_id("chatcmpl-mock-")
    messages = body.get("messages")
    if MODEL_LIKE_FIELDS.isdisjoint(body) and not _last_is_tool_result(messages):
        text = last_user_text(messages)  # the plain echo, as cheap as it ever was
        usage = _usage(_prompt_tokens(body), count_tokens(text))
        return Reply(reply_id, int(time.time()), body.get("model"), [Answer(text, "stop")], usage, False)
    answers = model_like_answers(body, reply_id.removeprefix("chatcmpl-mock-"))
    usage = _usage(_prompt_tokens(body), sum(answer.tokens() for answer in answers))
    return Reply(reply_id, int(time.time()), body.get("model"), answers, usage, body.get("logprobs") is True)


def model_like_answers(body: JSONObject, serial: str) -> list[Answer]:
    """The answers to a request that asks for more than an echo: tools, formats, n, limits, logprobs."""
    messages = body.get("messages")
    user_text = last_user_text(messages)
    text = answer_text(messages)
    functions = tools_to_call(body, user_text, after_tool_result=_last_is_tool_result(messages))
    count = _whole(body.get("n"), 1)
    top = _whole(body.get("top_logprobs"), 0)
    arguments = [tool_arguments(function, user_text) for function in functions]
    answers = []
    for index in range(count):
        if functions:
            calls = [{"id": f"call_{serial}_{index}_{number}", "type": "function",
                      "function": {"name": str(function.get("name")), "arguments": arguments[number]}}
                     for number, function in enumerate(functions)]
            answers.append(Answer(None, "tool_calls", calls))
            continue
        content, finish = formatted_content(body, text, index)
        answers.append(Answer(content, finish))
    if body.get("logprobs") is True:
        for answer in answers:
            answer.logprobs = token_logprobs(answer.content, top) if answer.content is not None else None
    return answers


def _whole(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _last_is_tool_result(messages: Any) -> bool:
    return isinstance(messages, list) and bool(messages) and isinstance(messages[-1], dict) \
        and messages[-1].get("role") == "tool"


def answer_text(messages: Any) -> str:
    """The text answer: the echo of the last user message, or a quote of a tool's result just given."""
    if _last_is_tool_result(messages):
        return "The tool returned: " + content_text(messages[-1].get("content"))
    return last_user_text(messages)


def tools_to_call(body: JSONObject, user_text: str, *, after_tool_result: bool) -> list[JSONObject]:
    """The function definitions to call: the forced one, else those the last user message names."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return []
    functions = [tool["function"] for tool in tools
                 if isinstance(tool, dict) and isinstance(tool.get("function"), dict)]
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return [next((function for function in functions if function.get("name") == name), {"name": str(name)})]
    named = [] if after_tool_result else [function for function in functions if _names(user_text, function)]
    if body.get("parallel_tool_calls") is False:
        named = named[:1]
    if choice == "required":
        return named or functions[:1]
    return named


def _names(text: str, function: JSONObject) -> bool:
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return False
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def tool_arguments(function: JSONObject, text: str) -> str:
    """Arguments for a call of `function`, as JSON valid against its `parameters` schema.

    A schema that constrains nothing (`{"type": "object"}`, or none) gets `{"input": <the user's text>}`."""
    parameters = function.get("parameters")
    if isinstance(parameters, dict) and set(parameters) - _UNCONSTRAINING:
        return orjson.dumps(value_for(parameters, seed_text=text)).decode()
    return orjson.dumps({"input": text}).decode()


def formatted_content(body: JSONObject, text: str, index: int) -> tuple[str, str]:
    """Choice `index`'s content in the requested `response_format`, cut by `stop` and the token limit, and its
    finish reason. Choices after the first differ: text ends " (2)", " (3)", ... (after a stop cut), JSON is made
    from the text with that ending."""
    suffix = f" ({index + 1})" if index else ""
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema":
        spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return limited(orjson.dumps(value_for(schema, seed_text=text + suffix)).decode(), body)
        kind = "json_object"
    if kind == "json_object":
        return limited(orjson.dumps({"reply": text + suffix}).decode(), body)
    return limited(text, body, suffix=suffix)


def limited(content: str, body: JSONObject, *, suffix: str = "") -> tuple[str, str]:
    """`content` cut before the first `stop` sequence, `suffix` added, then cut to `max_completion_tokens` (or
    `max_tokens`) tokens; and the finish reason, `length` when that limit cut it (JSON cut so is invalid, as a
    real model's is)."""
    stop = body.get("stop")
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cuts = [content.find(sequence) for sequence in sequences if isinstance(sequence, str) and sequence]
    found = [cut for cut in cuts if cut >= 0]
    if found:
        content = content[:min(found)]
    content += suffix
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and count_tokens(content) > limit:
        return first_tokens(content, limit), "length"
    return content, "stop"


def first_tokens(text: str, limit: int) -> str:
    """`text` up to the end of its `limit`th token (whitespace word)."""
    if limit <= 0:
        return ""
    for number, word in enumerate(re.finditer(r"\S+", text), start=1):
        if number == limit:
            return text[:word.end()]
    return text


def token_pieces(text: str) -> list[str]:
    """`text` as tokens that concatenate back to it: each word with the whitespace before it."""
    pieces = re.findall(r"\s*\S+", text)
    tail = text[sum(map(len, pieces)):]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    return pieces


def token_logprobs(text: str, top: int) -> list[JSONObject]:
    """`logprobs.content` for `text`: each token with its bytes, a deterministic log probability and `top`
    alternatives (the token itself first)."""
    entries = []
    for position, piece in enumerate(token_pieces(text)):
        logprob = -((zlib.crc32(f"{position}:{piece}".encode()) % 2000) + 1) / 1000
        lead = piece[:len(piece) - len(piece.lstrip())]
        others = [lead + word for word in _ALTERNATIVES if lead + word != piece][:max(top - 1, 0)]
        alternatives = [_logprob(piece, logprob)] + [_logprob(other, round(logprob - 0.5 * (rank + 1), 3))
                                                     for rank, other in enumerate(others)]
        entries.append({**_logprob(piece, logprob), "top_logprobs": alternatives[:top]})
    return entries


def _logprob(token: str, logprob: float) -> JSONObject:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def _message(answer: Answer) -> JSONObject:
    message: JSONObject = {"role": "assistant", "content": answer.content, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = answer.tool_calls
    return message


def _logprobs(entries: list[JSONObject] | None, wanted: bool) -> JSONObject | None:
    return {"content": entries, "refusal": None} if wanted else None


def chat_reply(body: JSONObject) -> JSONObject:
    """A complete `chat.completion` answering `body`."""
    reply = plan_reply(body)
    choices = [{"index": index, "message": _message(answer), "logprobs": _logprobs(answer.logprobs, reply.logprobs),
                "finish_reason": answer.finish_reason} for index, answer in enumerate(reply.answers)]
    return {
        "id": reply.id, "object": "chat.completion", "created": reply.created, "model": reply.model,
        "system_fingerprint": "sluice-mock", "choices": choices, "usage": reply.usage,
    }


def split_text(text: str, parts: int) -> list[str]:
    """Split `text` into at most `parts` pieces that concatenate back to it."""
    size = max(1, -(-len(text) // parts))
    return [text[start:start + size] for start in range(0, len(text), size)] or [""]


def chat_chunks(body: JSONObject, parts: int, include_usage: bool) -> list[JSONObject]:
    """The `chat.completion.chunk` objects that stream the same answer as `chat_reply`: the choices' deltas
    taken in turn, each choice with its index, then the usage when asked for."""
    reply = plan_reply(body)
    base = {"id": reply.id, "object": "chat.completion.chunk", "created": reply.created,
            "model": reply.model, "system_fingerprint": "sluice-mock"}
    streams = [_choice_deltas(index, answer, parts, reply.logprobs) for index, answer in enumerate(reply.answers)]
    chunks = [{**base, "choices": [choice], "usage": None}
              for turn in itertools.zip_longest(*streams) for choice in turn if choice is not None]
    if include_usage:
        chunks.append({**base, "choices": [], "usage": reply.usage})
    return chunks


def _choice_deltas(index: int, answer: Answer, parts: int, logprobs: bool) -> list[JSONObject]:
    """One choice's stream: the role, its tool calls or content in about `parts` pieces, its finish reason."""

    def delta(content: JSONObject, finish_reason: str | None = None, entries: JSONObject | None = None
              ) -> JSONObject:
        return {"index": index, "delta": content, "logprobs": entries, "finish_reason": finish_reason}

    deltas = [delta({"role": "assistant", "content": ""})]
    for number, call in enumerate(answer.tool_calls):
        head = {"index": number, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}
        deltas.append(delta({"tool_calls": [head]}))
        deltas.extend(delta({"tool_calls": [{"index": number, "function": {"arguments": piece}}]})
                      for piece in split_text(call["function"]["arguments"], parts))
    if answer.content is not None and logprobs and answer.logprobs:
        size = max(1, -(-len(answer.logprobs) // parts))
        for start in range(0, len(answer.logprobs), size):
            entries = answer.logprobs[start:start + size]
            deltas.append(delta({"content": "".join(entry["token"] for entry in entries)},
                                entries=_logprobs(entries, True)))
    elif answer.content is not None:
        deltas.extend(delta({"content": piece}) for piece in split_text(answer.content, parts))
    deltas.append(delta({}, answer.finish_reason))
    return deltas


def completion_reply(body: JSONObject) -> JSONObject:
    """A legacy `text_completion` echoing the prompt."""
    prompt = body.get("prompt", "")
    text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt)) if isinstance(prompt, list) else ""
    return {
        "id": _next_id("cmpl-mock-"), "object": "text_completion", "created": int(time.time()),
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
