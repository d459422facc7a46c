"""The OpenAI-compatible hot routes (chat, completions, embeddings) as raw ASGI handlers.

These routes skip FastAPI's routing, dependency injection and response models on purpose:
measured in docs/benchmarks.md, they cost more than the rest of a proxied request. The
request is parsed once with orjson and validated with the Pydantic schemas from
`http/schemas.py`; a body that needs no rewrite goes upstream as the caller's own bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncGenerator, Callable
from functools import partial
from time import perf_counter, time

import orjson
from pydantic import BaseModel, ValidationError

from sluice.errors import GatewayError, InvalidRequest, NotFound, internal_error
from sluice.exchange import Exchange, notify, tap_stream
from sluice.gateway import Gateway
from sluice.http.asgi import (
    JSON_TYPE,
    ASGIApp,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    read_body,
    request_headers,
    send_bytes,
    send_error,
)
from sluice.http.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from sluice.keys.presented import presented_key
from sluice.keys.principal import Principal
from sluice.limits.admission import Grant
from sluice.providers.base import JSONObject, Operation, Provider, UpstreamRequest
from sluice.routing.breaker import CircuitOpen
from sluice.streaming import (
    NDJSON_HEADERS,
    SSE_HEADERS,
    StreamMode,
    error_event,
    ndjson_error_ending,
    ndjson_lines,
    requested_mode,
)
from sluice.telemetry.trace_context import TraceIds

logger = logging.getLogger("sluice.http")

_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
PROPAGATED_HEADERS = (b"traceparent", b"tracestate")
Ending = Callable[[bytes, GatewayError], bytes]
"""What ends a stream broken by `error`, given the last bytes sent (`tail`)."""
SCHEMAS: dict[Operation, type[BaseModel]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
    "embeddings": EmbeddingRequest,
}


def hot_routes(gateway: Gateway) -> dict[str, ASGIApp]:
    """The raw ASGI handler for each OpenAI POST route, by path."""
    return {
        "/v1/chat/completions": partial(handle, gateway, "chat"),
        "/v1/completions": partial(handle, gateway, "completions"),
        "/v1/embeddings": partial(handle, gateway, "embeddings"),
    }


def request_id_of(headers: dict[bytes, bytes]) -> bytes:
    """The caller's `X-Request-ID` when it is sane, else a new one."""
    given = headers.get(b"x-request-id")
    if given and _SAFE_REQUEST_ID.fullmatch(given):
        return given
    return os.urandom(16).hex().encode()


async def authenticate(gateway: Gateway, headers: dict[bytes, bytes]) -> Principal:
    authorization = headers.get(b"authorization")
    api_key = headers.get(b"x-api-key")
    return await gateway.keys.authenticate(presented_key(
        authorization.decode("latin-1") if authorization else None,
        api_key.decode("latin-1") if api_key else None,
    ))


def parse_body(raw: bytes, schema: type[BaseModel]) -> JSONObject:
    """The request as a JSON object, validated against `schema`; InvalidRequest names the bad field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request. The body must be valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
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


def upstream_request(gateway: Gateway, operation: Operation, principal: Principal, raw: bytes,
                     headers: dict[bytes, bytes], request_id: bytes, exchange: Exchange | None = None
                     ) -> tuple[UpstreamRequest, Provider]:
    """Validate, resolve the model and build the call to make upstream; note the routing in `exchange`."""
    body = parse_body(raw, SCHEMAS[operation])
    model = body["model"]
    if not principal.may_use(model):
        raise NotFound(f"The model '{model}' does not exist or you do not have access to it.", param="model",
                       code="model_not_found")
    deployment = gateway.routes.resolve(model)
    if principal.providers is not None:
        principal.check_provider(deployment.provider.name)
    templated = operation == "chat" and "prompt" in body
    if templated:
        apply_prompt(gateway, body, exchange)
    if deployment.upstream_model != model:
        body["model"] = deployment.upstream_model
        raw_out: bytes | None = None
    else:
        raw_out = None if templated else raw
    if exchange is not None:
        exchange.model, exchange.upstream_model = model, deployment.upstream_model
        exchange.provider = deployment.provider.name
    forwarded = {"x-request-id": request_id.decode()}
    for name in PROPAGATED_HEADERS:
        if name in headers:
            forwarded[name.decode()] = headers[name].decode("latin-1")
    return UpstreamRequest(operation, body, raw_out, forwarded), deployment.provider


def apply_prompt(gateway: Gateway, body: JSONObject, exchange: Exchange | None) -> None:
    """Replace the body's `prompt` (a template reference) with the rendered messages, put before any given."""
    reference = body.pop("prompt")
    if reference is None:
        return
    rendered = gateway.prompts.render(reference)
    body["messages"] = rendered.messages + (body.get("messages") or [])
    if exchange is not None:
        template = rendered.template
        exchange.prompt_name, exchange.prompt_version = template.name, template.version
        exchange.prompt_template, exchange.prompt_variables = template.template_json, rendered.variables


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
    started = perf_counter()
    headers = request_headers(scope)
    request_id = request_id_of(headers)
    response_headers = [(b"x-request-id", request_id)]
    exchange = Exchange(request_id=request_id.decode(), endpoint=scope["path"], method="POST", started_at=time(),
                        operation=operation, request_headers=scope["headers"])
    if gateway.tracing:
        exchange.trace = TraceIds.from_traceparent(headers.get(b"traceparent"))
        exchange.trace_id = exchange.trace.trace_id
    admission = gateway.admission
    grant: Grant | None = None
    gateway.request_started()
    try:
        if admission.per_ip:
            grant = await admission.admit_ip(scope)
        principal = await authenticate(gateway, headers)
        exchange.key_id, exchange.principal = principal.key_id, principal
        raw = exchange.request_body = await read_body(receive, headers, gateway.config.limits.max_body_bytes)
        request, provider = upstream_request(gateway, operation, principal, raw, headers, request_id, exchange)
        if admission.needed(principal, exchange.model):
            grant = await admission.admit(principal, grant, model=exchange.model, body=request.body, size=len(raw),
                                          exchange=exchange)
        if grant is not None:
            response_headers += grant.headers()
        mode = requested_mode(scope["query_string"], headers)
        if mode is not None:
            apply_mode(request, mode)
        if exchange.trace is not None:
            request.headers["traceparent"] = exchange.trace.traceparent_for_upstream()
        guard = gateway.guards[provider.name]  # the provider's breaker and retries (routing/guard.py)
        upstream_started = perf_counter()
        exchange.upstream_offset = upstream_started - started
        if request.stream:
            exchange.stream = True
            chunks = tap_stream(await guard.stream(request), exchange, started)
            waited = exchange.latency_upstream = perf_counter() - upstream_started
            exchange.status = 200
            response_headers.append(_overhead(gateway, operation, perf_counter() - started - waited))
            if mode == "ndjson":
                await send({"type": "http.response.start", "status": 200, "headers": NDJSON_HEADERS + response_headers})
                await relay(ndjson_lines(chunks), receive, send, ndjson_error_ending)
            else:
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + response_headers})
                await relay(chunks, receive, send)
            if exchange.error is not None:  # the upstream broke the stream after its 200: not retried
                guard.broke()
            return
        reply = exchange.response_body = await guard.send(request)
        upstream = exchange.latency_upstream = perf_counter() - upstream_started
        exchange.status = 200
        response_headers.append(_overhead(gateway, operation, perf_counter() - started - upstream))
        response_headers.append((b"content-length", str(len(reply)).encode()))
        await send_bytes(send, 200, reply, [JSON_TYPE, *response_headers])
    except GatewayError as exc:
        exchange.status, exchange.error = exc.status, exc.message
        exchange.error_type, exchange.error_code = exc.type, exc.code
        if isinstance(exc, CircuitOpen):
            exchange.upstream_offset = None  # refused by the breaker: no upstream call, so no upstream span
        await send_error(send, exc, response_headers)
    except ClientDisconnected:
        exchange.client_disconnected = True
    except Exception:
        logger.exception("unhandled error on %s", scope["path"])
        error = internal_error()
        exchange.status, exchange.error = error.status, error.message
        await send_error(send, error, response_headers)
    finally:
        if grant is not None:
            grant.release()
        exchange.latency_total = perf_counter() - started
        gateway.request_finished()
        notify(gateway.observers, exchange)


def _overhead(gateway: Gateway, operation: Operation, seconds: float) -> tuple[bytes, bytes]:
    """Record the gateway's own time for this request and return the header that shows it."""
    gateway.metrics.overhead_by_operation[operation].observe(seconds)
    return b"x-sluice-overhead-ms", f"{seconds * 1000:.2f}".encode()


def sse_error_ending(tail: bytes, error: GatewayError) -> bytes:
    """The SSE error event that ends a broken stream, after a separator if `tail` left an event half-sent."""
    return (b"" if tail.endswith(b"\n\n") else b"\n\n") + error_event(error)


async def relay(chunks: AsyncGenerator[bytes, None], receive: Receive, send: Send,
                ending: Ending | None = sse_error_ending) -> None:
    """Send each chunk as it arrives; a client that leaves cancels the upstream. A broken upstream ends the stream
    with `ending(tail, error)` (an SSE error event by default), or, if `ending` is None, aborts the response by
    raising, so the client sees a truncated body rather than a complete one."""
    task = asyncio.current_task()
    assert task is not None
    gone = asyncio.Event()
    watcher = asyncio.create_task(_cancel_on_disconnect(receive, task, gone))
    tail = b"\n\n"
    try:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            tail = chunk[-2:] or tail
    except GatewayError as exc:
        if ending is None:
            raise
        last = ending(tail, exc)
    except asyncio.CancelledError:
        if not gone.is_set():
            raise
        task.uncancel()
        return
    except Exception:
        logger.exception("stream relay failed")
        if ending is None:
            raise
        last = ending(tail, internal_error())
    else:
        last = b""
    finally:
        watcher.cancel()
        await chunks.aclose()
    await send({"type": "http.response.body", "body": last, "more_body": False})


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[None], gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            task.cancel()
            return
