"""The OpenAI-compatible hot routes (chat, completions, embeddings) as raw ASGI handlers.

These routes skip FastAPI's routing, dependency injection and response models on purpose:
measured in docs/benchmarks.md, they cost more than the rest of a proxied request. The
request is parsed once with orjson and validated with the Pydantic schemas from
`http/schemas.py`; a body that needs no rewrite goes upstream as the caller's own bytes.
"""

from __future__ import annotations

from functools import partial

import orjson
from pydantic import BaseModel, ValidationError

from sluice.errors import InvalidRequest
from sluice.gateway import Gateway
from sluice.http.asgi import JSON_TYPE, ASGIApp, Receive, Scope, Send, read_body, send_bytes
from sluice.http.duplicate_keys import refuse_duplicate_keys
from sluice.http.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from sluice.pipeline.answer import relay, serve
from sluice.pipeline.flow import Flow
from sluice.providers.base import JSONObject, Operation, UpstreamRequest
from sluice.routing.cache import BYPASS, HIT, MISS
from sluice.streaming import NDJSON_HEADERS, SSE_HEADERS, StreamMode, ndjson_error_ending, ndjson_lines, requested_mode

SCHEMAS: dict[Operation, type[BaseModel]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
    "embeddings": EmbeddingRequest,
}
X_CACHE = {verdict: (b"x-cache", verdict.encode()) for verdict in (HIT, MISS, BYPASS)}
"""The `X-Cache` header of each verdict of the response cache (`Exchange.cache`)."""
STREAM_CACHE = X_CACHE[BYPASS]


def hot_routes(gateway: Gateway) -> dict[str, ASGIApp]:
    """The raw ASGI handler for each OpenAI POST route, by path."""
    return {
        "/v1/chat/completions": partial(handle, gateway, "chat"),
        "/v1/completions": partial(handle, gateway, "completions"),
        "/v1/embeddings": partial(handle, gateway, "embeddings"),
    }


def parse_body(raw: bytes, schema: type[BaseModel]) -> JSONObject:
    """The request as a JSON object, validated against `schema`; InvalidRequest names the bad field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request. The body must be valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    refuse_duplicate_keys(raw, body)
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = field_path(error["loc"])
        raise InvalidRequest(f"Invalid value for '{param}': {error['msg']}.", param=param or None) from None
    return body


def field_path(location: tuple[int | str, ...]) -> str:
    """A validation error location as OpenAI writes it: `messages[0].content`."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith(("function-", "str", "list[", "dict[", "literal[", "int", "float", "bool")):
            path = f"{path}.{part}" if path else part
    return path


def apply_mode(request: UpstreamRequest, mode: StreamMode) -> None:
    """Make the upstream call match the framing asked for: streamed for sse and ndjson, complete for json."""
    streamed = mode != "json"
    if streamed and request.operation == "embeddings":
        raise InvalidRequest("Embeddings cannot be streamed; use stream_mode=json.", param="stream_mode",
                             code="invalid_stream_mode")
    if request.stream != streamed:
        request.body["stream"] = streamed
        if not streamed:
            request.body.pop("stream_options", None)
        request.raw = None


async def handle(gateway: Gateway, operation: Operation, scope: Scope, receive: Receive, send: Send) -> None:
    """One OpenAI-compatible request, from bytes in to bytes (or a stream of events) out."""
    flow = Flow.begin(gateway, scope, operation)
    await serve(flow, send, partial(_answer, flow, operation, scope, receive, send))


async def _answer(flow: Flow, operation: Operation, scope: Scope, receive: Receive, send: Send) -> None:
    await flow.admit_address(scope)
    await flow.authenticate()
    raw = flow.exchange.request_body = await read_body(receive, flow.headers, flow.body_limit, flow.body_clock)
    client = flow.watch_client(receive)
    if flow.gateway.cache is not None and not _mode_asked(scope, flow.headers):
        recalled = await flow.recall(operation, raw)
        if recalled is not None:
            await _complete(flow, send, recalled)
            return
    request, provider = flow.route(operation, parse_body(raw, SCHEMAS[operation]), raw)
    await flow.admit(model=flow.exchange.model, body=request.body, size=len(raw))
    mode = requested_mode(scope["query_string"], flow.headers)
    if mode is not None:
        apply_mode(request, mode)
    if request.stream:
        flow.exchange.cache = BYPASS  # streams are never cached (docs/caching.md)
        chunks = await flow.open_stream(request, provider)
        # The 200 waits for the first chunk: a stream that fails before it is answered with the error's status.
        if mode == "ndjson":
            start = {"type": "http.response.start", "status": 200,
                     "headers": NDJSON_HEADERS + flow.response_headers(STREAM_CACHE)}
            await relay(ndjson_lines(chunks), client, send, ndjson_error_ending, start, flow.gateway.streams)
        else:
            start = {"type": "http.response.start", "status": 200,
                     "headers": SSE_HEADERS + flow.response_headers(STREAM_CACHE)}
            await relay(chunks, client, send, start=start, cutoff=flow.gateway.streams)
        return
    await _complete(flow, send, await flow.call(request, provider))


def _mode_asked(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """Whether the caller chose a stream mode (`?stream_mode=`, `X-Stream-Mode`): then the request goes the whole
    way, since the mode may make the same bytes a stream (never cached) or refuse them."""
    return b"x-stream-mode" in headers or b"stream_mode=" in scope["query_string"]


async def _complete(flow: Flow, send: Send, reply: bytes) -> None:
    """A complete answer (not streamed), with its length and what the cache did."""
    length = (b"content-length", str(len(reply)).encode())
    cached = X_CACHE[flow.exchange.cache or BYPASS]
    await send_bytes(send, 200, reply, [JSON_TYPE, *flow.response_headers(length, cached)])
