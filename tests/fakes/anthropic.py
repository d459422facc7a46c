"""A scripted fake of Anthropic's Messages API that speaks the real wire format, with reply builders."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Event = tuple[str, dict[str, Any]]
ToolCall = tuple[str, str, dict[str, Any]]  # (tool_use id, tool name, input)

VERSIONS = ("2023-06-01", "2026-10-21")
SAMPLING_REMOVED_IN = "2026-10-21"
FAKE_MODEL = "claude-fake-1"
ECHO_PREFIX = "echo: "
TOP_LEVEL_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "metadata", "tools", "tool_choice",
    "thinking", "service_tier", "temperature", "top_p", "top_k", "container", "mcp_servers", "context_management",
    "output_config", "inference_geo",
})


@dataclass
class StreamReply:
    """Stream `events` as SSE, sleeping `delay` seconds before each one after the first."""

    events: list[Event]
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ErrorReply:
    """An Anthropic error reply: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""

    status: int
    type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RawReply:
    """Arbitrary bytes, e.g. an HTML error page from a proxy in front of the API."""

    status: int
    body: bytes
    content_type: str = "text/plain"


Reply = dict[str, Any] | list[Event] | StreamReply | ErrorReply | RawReply


@dataclass
class RecordedRequest:
    """What the fake received: the decoded JSON body (or the raw text) and the lower-cased headers."""

    path: str
    headers: dict[str, str]
    body: Any


# --- builders -------------------------------------------------------------------------------------------------


def message(
    text: str | None = "Hello!",
    *,
    tool_calls: Sequence[ToolCall] = (),
    id: str = "msg_01FakeMessage",
    model: str = FAKE_MODEL,
    stop_reason: str | None = None,
    stop_sequence: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 5,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
) -> dict[str, Any]:
    """A non-streaming Messages API reply: optional text, then one `tool_use` block per call."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text is not None else []
    content += [{"type": "tool_use", "id": call_id, "name": name, "input": args} for call_id, name, args in tool_calls]
    usage = {
        "input_tokens": input_tokens, "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_creation_input_tokens, "cache_read_input_tokens": cache_read_input_tokens,
        "service_tier": "standard",
    }
    return {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason or ("tool_use" if tool_calls else "end_turn"), "stop_sequence": stop_sequence,
        "usage": usage,
    }


def split(text: str, parts: int) -> list[str]:
    """`text` cut into at most `parts` non-empty pieces of near-equal length (mid-word, mid-JSON)."""
    size = max(1, -(-len(text) // max(1, parts)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def message_events(reply: dict[str, Any], chunks: int = 3) -> list[Event]:
    """The SSE events with which the API streams `reply`, each block's text or input JSON cut into `chunks`."""
    usage = reply["usage"]
    start = {**reply, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
    events: list[Event] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(reply["content"]):
        block_events = _block_events(index, block, chunks)
        if index == 0:  # the API pings right after the first content_block_start
            block_events.insert(1, ("ping", {"type": "ping"}))
        events += block_events
    delta = {"stop_reason": reply["stop_reason"], "stop_sequence": reply["stop_sequence"]}
    final_usage = {name: usage[name] for name in ("input_tokens", "cache_creation_input_tokens",
                                                   "cache_read_input_tokens", "output_tokens") if name in usage}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": final_usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _block_events(index: int, block: dict[str, Any], chunks: int) -> list[Event]:
    if block["type"] == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in split(block["text"], chunks)]
    else:
        start = {**block, "input": {}}
        # The API opens every tool input with an empty fragment, then sends the JSON in arbitrary cuts.
        pieces = [""] + split(json.dumps(block["input"]), chunks)
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    return [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
        *[("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas],
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def text_stream(text: str, chunks: int = 3, **fields: Any) -> list[Event]:
    """Events streaming one text reply; `fields` go to `message()` (id, model, stop_reason, token counts)."""
    return message_events(message(text, **fields), chunks)


def tool_stream(calls: Sequence[ToolCall], text_before: str | None = None, chunks: int = 3,
                **fields: Any) -> list[Event]:
    """Events streaming a turn that calls each of `calls` (in parallel), optionally after some text."""
    return message_events(message(text_before, tool_calls=calls, **fields), chunks)


def error_event(error_type: str = "overloaded_error", message: str = "Overloaded") -> Event:
    """The `error` event the API sends when a stream that started with HTTP 200 fails."""
    return ("error", {"type": "error", "error": {"type": error_type, "message": message}})


def error_reply(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> ErrorReply:
    return ErrorReply(status, error_type, message, dict(headers or {}))


def rate_limited(message: str = "Number of request tokens has exceeded your per-minute rate limit",
                 retry_after: int = 1) -> ErrorReply:
    return error_reply(429, "rate_limit_error", message, {"retry-after": str(retry_after)})


def overloaded(message: str = "Overloaded") -> ErrorReply:
    return error_reply(529, "overloaded_error", message)


# --- the app --------------------------------------------------------------------------------------------------


def create_fake_anthropic(
    *,
    api_key: str | None = None,
    versions: Collection[str] = VERSIONS,
    stream_delay: float = 0.0,
    strict: bool = True,
) -> Starlette:
    """The fake API. Tests append replies to `app.state.script` and read `app.state.requests`.

    `api_key=None` accepts any non-empty key. `strict` validates bodies the way the real API does (required
    and unknown fields, roles, sampling params under 2026-10-21, empty text, tool_use/tool_result pairing).
    """

    async def messages(request: Request) -> Response:
        state = request.app.state
        raw = await request.body()
        body = _decode(raw)
        state.requests.append(RecordedRequest(request.url.path, {k.lower(): v for k, v in request.headers.items()},
                                              body))
        problem = _check_headers(request, api_key, versions) or (_check_body(body, request) if strict else None)
        if problem is not None:
            return _error_response(problem)
        fields = body if isinstance(body, dict) else {}
        state.replies += 1
        reply: Reply = state.script.pop(0) if state.script else _echo(fields, state.replies)
        return _respond(reply, bool(fields.get("stream")), stream_delay)

    async def count_tokens(request: Request) -> Response:
        body = _decode(await request.body())
        state = request.app.state
        state.requests.append(RecordedRequest(request.url.path, {k.lower(): v for k, v in request.headers.items()},
                                              body))
        problem = _check_headers(request, api_key, versions)
        if problem is not None:
            return _error_response(problem)
        if not isinstance(body, dict) or "max_tokens" in body or "messages" not in body:
            return _error_response(_invalid("count_tokens takes model and messages, and no max_tokens"))
        return JSONResponse({"input_tokens": len(json.dumps(body["messages"]).split())})

    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"]),
                            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"])])
    app.state.script = []
    app.state.requests = []
    app.state.replies = 0
    return app


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _check_headers(request: Request, api_key: str | None, versions: Collection[str]) -> ErrorReply | None:
    key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization", "")
    if key is None and authorization.lower().startswith("bearer "):
        key = authorization[len("bearer ") :].strip()
    if not key:
        return error_reply(401, "authentication_error", "x-api-key header is required")
    if api_key is not None and key != api_key:
        return error_reply(401, "authentication_error", "invalid x-api-key")
    version = request.headers.get("anthropic-version")
    if version is None:
        return error_reply(400, "invalid_request_error", "anthropic-version: header is required")
    if version not in versions:
        return error_reply(400, "invalid_request_error", f"anthropic-version: invalid version {version!r}")
    return None


def _check_body(body: Any, request: Request) -> ErrorReply | None:
    if not isinstance(body, dict):
        return _invalid("The request body is not valid JSON.")
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            return _invalid(f"{name}: Field required")
    for name in body:
        if name not in TOP_LEVEL_FIELDS:
            return _invalid(f"{name}: Extra inputs are not permitted")
    if request.headers.get("anthropic-version", "") >= SAMPLING_REMOVED_IN:
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                return _invalid(f"{name}: is not supported by anthropic-version {SAMPLING_REMOVED_IN}")
    return _check_messages(body["messages"])


def _invalid(message: str) -> ErrorReply:
    return error_reply(400, "invalid_request_error", message)


def _check_messages(messages: Any) -> ErrorReply | None:
    if not isinstance(messages, list) or not messages:
        return _invalid("messages: at least one message is required")
    pending: set[str] = set()  # tool_use ids of the previous assistant turn
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            return _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = _blocks(turn.get("content"))
        if any(b.get("type") == "text" and not b.get("text") for b in blocks):
            return _invalid("messages: text content blocks must be non-empty")
        problem = _check_pairing(i, blocks, pending)
        if problem is not None:
            return problem
        pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    return None


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []


def _check_pairing(i: int, blocks: list[dict[str, Any]], pending: set[str]) -> ErrorReply | None:
    results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
    if results - pending:
        return _invalid(f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{sorted(map(str, results - pending))}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message.")
    if pending - results:
        return _invalid(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                        f"{', '.join(sorted(pending - results))}")
    return None


def _echo(body: dict[str, Any], number: int) -> dict[str, Any]:
    """The default reply: the last user text echoed back, with word counts as token counts."""
    turns = body.get("messages")
    turns = turns if isinstance(turns, list) else []
    text = ECHO_PREFIX + _last_user_text(turns)
    return message(text, id=f"msg_fake{number:04d}", model=str(body.get("model", FAKE_MODEL)),
                   input_tokens=len(json.dumps(turns).split()), output_tokens=len(text.split()))


def _last_user_text(turns: list[Any]) -> str:
    for turn in reversed(turns):
        if isinstance(turn, dict) and turn.get("role") == "user":
            return "".join(_texts(_blocks(turn.get("content"))))
    return ""


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    texts = []
    for block in blocks:
        if block.get("type") == "text":
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            texts.extend(_texts(_blocks(block.get("content"))))
    return texts


def _respond(reply: Reply, stream: bool, delay: float) -> Response:
    if isinstance(reply, ErrorReply):
        return _error_response(reply)
    if isinstance(reply, RawReply):
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)
    if isinstance(reply, dict) and not stream:
        return JSONResponse(reply, headers={"request-id": "req_fake"})
    if isinstance(reply, dict):
        reply = message_events(reply)
    if isinstance(reply, list):
        reply = StreamReply(reply, delay)
    return StreamingResponse(_sse(reply), media_type="text/event-stream",
                             headers={"request-id": "req_fake", "cache-control": "no-cache", **reply.headers})


def _error_response(error: ErrorReply) -> JSONResponse:
    body = {"type": "error", "error": {"type": error.type, "message": error.message}, "request_id": "req_fake"}
    return JSONResponse(body, status_code=error.status, headers={"request-id": "req_fake", **error.headers})


def encoded(event: Event) -> bytes:
    """One event as the fake sends it on the wire."""
    name, data = event
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _sse(reply: StreamReply) -> AsyncIterator[bytes]:
    for number, event in enumerate(reply.events):
        if number and reply.delay:
            await anyio.sleep(reply.delay)
        yield encoded(event)
