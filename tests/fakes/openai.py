"""A scripted fake of the OpenAI API (and Azure OpenAI's classic layout) that speaks the real wire format.

Default replies are deterministic: chat and completions echo the last user text (``"echo: " + text``), tokens are
whitespace-split words, embeddings are unit vectors derived from a hash of each input. A chat request with
``tools`` whose last user text reads ``call get_weather {"city": "Paris"} and get_time {}`` gets tool calls instead.
Tests append `Reply`, `Stream`, `Delay`, `Hang` or `Error` entries to ``app.state.script`` (each entry answers one
request) and read what the gateway sent from ``app.state.requests`` (a list of `RecordedRequest`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.raw import raw_routes

FAKE_MODEL = "gpt-test"
MODELS = ("gpt-test", "gpt-4o-mini", "text-embedding-3-small")
ECHO_PREFIX = "echo: "
EMBEDDING_DIMENSIONS = 8
CREATED = 1_700_000_000
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

Chunk = dict[str, Any] | str
ToolCall = tuple[str, str, str]  # (call id, function name, JSON arguments)


# --- script entries -------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """Answer with exactly this status, JSON body (raw if `bytes`) and headers."""

    status: int
    body_json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stream:
    """Answer 200 with SSE: dict chunks as ``data: {json}``, strings verbatim, `delay` seconds between events.

    Ends with ``data: [DONE]`` unless `done` is false; `then_reset` drops the connection mid-body instead.
    """

    chunks: list[Chunk]
    delay: float = 0.0
    then_reset: bool = False
    done: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    abandoned: bool = False
    """Set when the client went away before the stream ended (the gateway cancelled its upstream call)."""


@dataclass
class Delay:
    """Sleep `seconds`, then give the default reply."""

    seconds: float


@dataclass
class Hang:
    """Never answer; return only once the client has gone away."""


@dataclass
class Error:
    """An OpenAI-shaped error: ``{"error": {"message", "type", "param", "code"}}``."""

    status: int
    message: str = "Something went wrong"
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


ScriptEntry = Reply | Stream | Delay | Hang | Error


@dataclass
class RecordedRequest:
    """What the fake received: JSON body (raw text if not JSON), lower-cased headers, and the Azure deployment."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    deployment: str | None = None


class ConnectionReset(Exception):
    """Raised inside a streaming body so that uvicorn drops the connection without finishing the response."""


# --- builders -------------------------------------------------------------------------------------------------


def chat_chunk(
    content: str | None = None,
    role: str | None = None,
    finish_reason: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = FAKE_MODEL,
    *,
    id: str = "chatcmpl-fake",
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; the delta holds only the fields given."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return _chunk_envelope(id, model, [choice])


def usage_chunk(prompt_tokens: int, completion_tokens: int, model: str = FAKE_MODEL, *,
                id: str = "chatcmpl-fake") -> dict[str, Any]:
    """The final chunk sent under ``stream_options.include_usage``: no choices, just usage."""
    return {**_chunk_envelope(id, model, []), "usage": usage(prompt_tokens, completion_tokens)}


def tool_call_deltas(index: int, call_id: str, name: str, arguments: str, parts: int = 3) -> list[dict[str, Any]]:
    """Delta entries streaming one call: the opening fragment, then `arguments` cut mid-JSON into `parts`."""
    first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    return [first, *({"index": index, "function": {"arguments": piece}} for piece in split(arguments, parts))]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def split(text: str, parts: int) -> list[str]:
    """`text` cut into at most `parts` non-empty pieces of near-equal length (mid-word, mid-JSON)."""
    size = max(1, -(-len(text) // max(1, parts)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The fake's unit-length embedding of `text`; every value is exactly representable as float32."""
    digest = b"".join(hashlib.sha256(f"{text}\0{i}".encode()).digest() for i in range(-(-dimensions // 8)))
    raw = [int.from_bytes(digest[4 * i : 4 * i + 4], "little") / 2**31 - 1.0 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(x / norm for x in raw))))


def parse_tool_calls(text: str) -> list[tuple[str, dict[str, Any]]] | None:
    """``call f {...} and g {...}`` → [(name, arguments)]; None when `text` is not such a command."""
    if not text.startswith("call "):
        return None
    decoder, rest = json.JSONDecoder(), text[len("call ") :].strip()
    calls: list[tuple[str, dict[str, Any]]] = []
    while rest:
        match = re.match(r"([A-Za-z0-9_.\-]+)\s*", rest)
        if match is None:
            return None
        rest, arguments = rest[match.end() :], dict[str, Any]()
        if rest.startswith("{"):
            try:
                arguments, end = decoder.raw_decode(rest)
            except ValueError:
                return None
            rest = rest[end:]
        calls.append((match.group(1), arguments))
        rest = re.sub(r"^\s*(and\b|,)?\s*", "", rest)
    return calls or None


def _chunk_envelope(id: str, model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": "fp_fake", "choices": choices, "usage": None}


# --- the app --------------------------------------------------------------------------------------------------


Handler = Callable[[Request, Any, int], Awaitable[Response]]


def create_fake_openai(*, api_key: str | None = "upstream-key", azure: bool = False) -> Starlette:
    """The fake API. `api_key=None` accepts any credentials; `azure` serves the classic deployment layout."""
    if azure:
        prefix = "/openai/deployments/{deployment}"
        routes = [Route(f"{prefix}/{name}", _endpoint(handler, api_key, azure=True), methods=["POST"])
                  for name, handler in (("chat/completions", _chat), ("completions", _completions),
                                        ("embeddings", _embeddings))]
        routes.append(Route("/openai/models", _endpoint(_models, api_key, azure=True), methods=["GET"]))
    else:
        routes = [
            Route("/v1/chat/completions", _endpoint(_chat, api_key), methods=["POST"]),
            Route("/v1/completions", _endpoint(_completions, api_key), methods=["POST"]),
            Route("/v1/embeddings", _endpoint(_embeddings, api_key), methods=["POST"]),
            Route("/v1/models", _endpoint(_models, api_key), methods=["GET"]),
            Route("/v1/models/{model:path}", _endpoint(_model, api_key), methods=["GET"]),
        ]
    routes += raw_routes()  # passthrough tests: echo, binary, streamed, gzip, redirect (tests/fakes/raw.py)
    routes.append(Route("/{path:path}", _endpoint(_not_found, None, fallback=True), methods=ALL_METHODS))
    app = Starlette(routes=routes)
    app.state.script = []
    app.state.requests = []
    app.state.models = list(MODELS)
    app.state.replies = 0
    return app


def _endpoint(handler: Handler, api_key: str | None, *, azure: bool = False,
              fallback: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Record the request, then answer: auth error, else the next script entry, else `handler`'s default."""

    async def endpoint(request: Request) -> Response:
        started = time.monotonic()
        state = request.app.state
        body = _decode(await request.body())
        state.requests.append(RecordedRequest(
            request.method, request.url.path, dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()}, body, request.path_params.get("deployment"),
        ))
        state.replies += 1
        number: int = state.replies
        problem = None if fallback else _check(request, api_key, azure)
        if problem is not None:
            response: Response = _error_response(problem)
        elif fallback:
            response = await handler(request, body, number)
        else:
            response = await _answer(request, handler, body, number)
        response.headers.setdefault("x-request-id", f"req_fake{number:06d}")
        response.headers["openai-processing-ms"] = str(round((time.monotonic() - started) * 1000))
        return response

    return endpoint


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def _check(request: Request, api_key: str | None, azure: bool) -> Error | None:
    if azure and "api-version" not in request.query_params:
        return Error(404, "Resource not found", code="404")
    if azure:
        key = request.headers.get("api-key")
    else:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else None
    if not key or (api_key is not None and key != api_key):
        shown = f"{key[:3]}***{key[-4:]}" if key else "<none>"
        return Error(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                     "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
    return None


async def _answer(request: Request, handler: Handler, body: Any, number: int) -> Response:
    script: list[ScriptEntry] = request.app.state.script
    entry = script.pop(0) if script else None
    if isinstance(entry, Reply):
        return _reply_response(entry)
    if isinstance(entry, Error):
        return _error_response(entry)
    if isinstance(entry, Stream):
        return _stream_response(entry)
    if isinstance(entry, Hang):
        while (await request.receive())["type"] != "http.disconnect":  # the body is read; only this can come
            pass
        return Response(status_code=499)
    if isinstance(entry, Delay):
        await anyio.sleep(entry.seconds)
    return await handler(request, body, number)


def _reply_response(reply: Reply) -> Response:
    if isinstance(reply.body_json, bytes):
        media_type = reply.headers.get("content-type", "text/plain")
        return Response(reply.body_json, status_code=reply.status, headers=reply.headers, media_type=media_type)
    return JSONResponse(reply.body_json, status_code=reply.status, headers=reply.headers)


def _error_response(error: Error) -> JSONResponse:
    body = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _stream_response(stream: Stream) -> StreamingResponse:
    headers = {"cache-control": "no-cache", **stream.headers}
    return StreamingResponse(_sse(stream), media_type="text/event-stream", headers=headers)


async def _sse(stream: Stream) -> AsyncIterator[bytes]:
    try:
        for number, chunk in enumerate(stream.chunks):
            if number and stream.delay:
                await anyio.sleep(stream.delay)
            yield (chunk if isinstance(chunk, str) else f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
                   ).encode()
    except BaseException:
        stream.abandoned = True
        raise
    if stream.then_reset:
        raise ConnectionReset("fake upstream dropped the connection mid-stream (scripted)")
    if stream.done:
        yield b"data: [DONE]\n\n"


def _invalid(message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return _error_response(Error(400, message, param=param, code=code))


def _require(request: Request, body: Any, name: str) -> JSONResponse | None:
    if not isinstance(body, dict):
        return _invalid("We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                        "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
                        "not valid JSON.)")
    if "model" not in body and "deployment" not in request.path_params:  # Azure: the deployment picks the model
        return _invalid("you must provide a model parameter")
    if name not in body:
        return _invalid(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    return None


def _model_name(request: Request, body: dict[str, Any]) -> str:
    return str(request.path_params.get("deployment") or body.get("model") or FAKE_MODEL)


def _words(text: str) -> int:
    return len(text.split())


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return bool(body.get("stream")) and isinstance(options, dict) and bool(options.get("include_usage"))


def _sse_response(chunks: list[Chunk]) -> StreamingResponse:
    return _stream_response(Stream(chunks))


# --- chat completions -----------------------------------------------------------------------------------------


async def _chat(request: Request, body: Any, number: int) -> Response:
    problem = _require(request, body, "messages")
    if problem is not None:
        return problem
    messages = body["messages"] if isinstance(body["messages"], list) else []
    model, chat_id = _model_name(request, body), f"chatcmpl-fake{number:06d}"
    prompt_tokens = sum(_words(_text(m.get("content"))) for m in messages if isinstance(m, dict))
    last = _last_user_text(messages)
    commands = parse_tool_calls(last) if body.get("tools") else None
    calls = [(f"call_fake{number:04d}_{i}", name, json.dumps(args, separators=(",", ":")))
             for i, (name, args) in enumerate(commands or [])]
    content = None if calls else ECHO_PREFIX + last
    completion_tokens = sum(_words(f"{name} {args}") for _, name, args in calls) if calls else _words(content or "")
    if body.get("stream"):
        chunks: list[Chunk] = _chat_chunks(chat_id, model, content, calls)
        if _include_usage(body):
            chunks.append(usage_chunk(prompt_tokens, completion_tokens, model, id=chat_id))
        return _sse_response(chunks)
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if calls:
        message["tool_calls"] = [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
                                 for call_id, name, args in calls]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if calls else "stop"}
    return JSONResponse({
        "id": chat_id, "object": "chat.completion", "created": CREATED, "model": model, "choices": [choice],
        "usage": usage(prompt_tokens, completion_tokens), "service_tier": "default", "system_fingerprint": "fp_fake",
    })


def _chat_chunks(chat_id: str, model: str, content: str | None, calls: list[ToolCall]) -> list[Chunk]:
    if calls:
        chunks: list[Chunk] = []
        for index, (call_id, name, arguments) in enumerate(calls):
            first, *rest = tool_call_deltas(index, call_id, name, arguments)
            role = "assistant" if index == 0 else None
            chunks.append(chat_chunk(role=role, tool_calls=[first], model=model, id=chat_id))
            chunks += [chat_chunk(tool_calls=[delta], model=model, id=chat_id) for delta in rest]
        return [*chunks, chat_chunk(finish_reason="tool_calls", model=model, id=chat_id)]
    pieces = re.findall(r"\S+\s*|\s+", content or "")
    return [
        chat_chunk("", role="assistant", model=model, id=chat_id),
        *(chat_chunk(piece, model=model, id=chat_id) for piece in pieces),
        chat_chunk(finish_reason="stop", model=model, id=chat_id),
    ]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content
                       if isinstance(part, dict) and part.get("type") == "text")
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


# --- legacy completions ---------------------------------------------------------------------------------------


async def _completions(request: Request, body: Any, number: int) -> Response:
    problem = _require(request, body, "prompt")
    if problem is not None:
        return problem
    prompt = body["prompt"]
    prompts = [str(p) for p in prompt] if isinstance(prompt, list) and prompt else [str(prompt)]
    model, cmpl_id = _model_name(request, body), f"cmpl-fake{number:06d}"
    texts = [ECHO_PREFIX + p for p in prompts]
    counts = usage(sum(map(_words, prompts)), sum(map(_words, texts)))
    envelope = {"id": cmpl_id, "object": "text_completion", "created": CREATED, "model": model,
                "system_fingerprint": "fp_fake"}
    if not body.get("stream"):
        choices = [{"text": text, "index": i, "logprobs": None, "finish_reason": "stop"}
                   for i, text in enumerate(texts)]
        return JSONResponse({**envelope, "choices": choices, "usage": counts})
    chunks: list[Chunk] = []
    for index, text in enumerate(texts):
        pieces = [*re.findall(r"\S+\s*|\s+", text), ""]
        chunks += [{**envelope, "choices": [{"text": piece, "index": index, "logprobs": None,
                                             "finish_reason": "stop" if n == len(pieces) - 1 else None}]}
                   for n, piece in enumerate(pieces)]
    if _include_usage(body):
        chunks.append({**envelope, "choices": [], "usage": counts})
    return _sse_response(chunks)


# --- embeddings and models ------------------------------------------------------------------------------------


async def _embeddings(request: Request, body: Any, number: int) -> Response:
    problem = _require(request, body, "input")
    if problem is not None:
        return problem
    texts = _embedding_inputs(body["input"])
    dimensions = body.get("dimensions") if isinstance(body.get("dimensions"), int) else EMBEDDING_DIMENSIONS
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = embedding_vector(text, dimensions)
        encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(_words(text) for text in texts)
    return JSONResponse({"object": "list", "data": data, "model": _model_name(request, body),
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _embedding_inputs(value: Any) -> list[str]:
    """Inputs as texts: a string, strings, one token list or token lists (tokens joined by spaces)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    if isinstance(value, list):
        return [v if isinstance(v, str) else " ".join(map(str, v)) if isinstance(v, list) else str(v) for v in value]
    return [str(value)]


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": CREATED, "owned_by": "sluice-fake"}


async def _models(request: Request, body: Any, number: int) -> Response:
    return JSONResponse({"object": "list", "data": [_model_object(name) for name in request.app.state.models]})


async def _model(request: Request, body: Any, number: int) -> Response:
    name = request.path_params["model"]
    if name not in request.app.state.models:
        return _error_response(Error(404, f"The model '{name}' does not exist", code="model_not_found",
                                     param="model"))
    return JSONResponse(_model_object(name))


async def _not_found(request: Request, body: Any, number: int) -> Response:
    return _error_response(Error(404, f"Invalid URL ({request.method} {request.url.path})"))
