"""`POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API as a front door on the one path.

The request is translated to chat (frontdoors/messages_request.py) for everything on the path that reads a request
(key scopes, limits, token estimates, routing, fallbacks) and for the deployments that speak OpenAI; an Anthropic
deployment is sent the caller's own body instead (`NativeCall`), and its reply or event stream reaches the caller
byte for byte. Errors, before the first byte or as an `error` event after it, are Anthropic-shaped.
"""

from __future__ import annotations

from functools import partial

import orjson

from sluice.errors import GatewayError, InvalidRequest, UpstreamProtocolError
from sluice.frontdoors.chat_reads import ChatReads
from sluice.frontdoors.messages_reply import ChatReplyError, anthropic_error, anthropic_error_event, chat_to_message
from sluice.frontdoors.messages_request import MessagesRequestError, messages_to_chat
from sluice.frontdoors.messages_stream import ChatToMessagesStream
from sluice.gateway import Gateway
from sluice.http.asgi import JSON_TYPE, ASGIApp, Receive, Scope, Send, read_body, send_bytes
from sluice.http.duplicate_keys import refuse_duplicate_keys
from sluice.ids import random_hex
from sluice.pipeline.answer import relay, serve
from sluice.pipeline.flow import Flow, Headers
from sluice.providers.anthropic import AnthropicProvider
from sluice.providers.base import JSONObject, NativeCall, UpstreamRequest
from sluice.routing.table import ModelRoute
from sluice.streaming import SSE_HEADERS

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
PASSED_HEADERS = (b"anthropic-version", b"anthropic-beta")
"""The caller's protocol headers an Anthropic deployment is sent unchanged."""
ESTIMATE_HEADER = (b"x-sluice-token-count", b"estimate")


def messages_routes(gateway: Gateway) -> dict[str, ASGIApp]:
    """The raw ASGI handler of each Messages API POST route, by path."""
    return {MESSAGES_PATH: partial(handle, gateway), COUNT_TOKENS_PATH: partial(count_tokens, gateway)}


async def send_anthropic_error(send: Send, error: GatewayError, headers: Headers) -> None:
    """The Anthropic-shaped error response for `error`."""
    body = orjson.dumps(anthropic_error(error.status, error.message, _anthropic_type(error)))
    extra = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items()]
    await send_bytes(send, error.status, body,
                     [JSON_TYPE, (b"content-length", str(len(body)).encode()), *headers, *extra])


def _anthropic_type(error: GatewayError) -> str | None:
    """The Anthropic error type an Anthropic upstream gave (kept as the error's code), else None (from the
    status)."""
    code = error.code
    return code if code is not None and code.endswith("_error") else None


def anthropic_ending(tail: bytes, error: GatewayError) -> bytes:
    """The `error` event that ends a broken stream."""
    return (b"" if tail.endswith(b"\n\n") else b"\n\n") + anthropic_error_event(error.status, error.message,
                                                                               _anthropic_type(error))


def parse_messages_body(raw: bytes) -> tuple[JSONObject, JSONObject]:
    """The caller's Messages request and its chat form; InvalidRequest names the bad field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    refuse_duplicate_keys(raw, body)
    try:
        return body, messages_to_chat(body)
    except MessagesRequestError as exc:  # "messages.0.role: …", as Anthropic's own errors name the field
        message = f"{exc.param}: {exc}" if exc.param and not str(exc).startswith(exc.param) else str(exc)
        raise InvalidRequest(message, param=exc.param) from None


def _passed_headers(headers: dict[bytes, bytes]) -> dict[str, str]:
    return {name.decode(): headers[name].decode("latin-1") for name in PASSED_HEADERS if name in headers}


async def handle(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """One Messages API call, from bytes in to an Anthropic message or event stream out."""
    flow = Flow.begin(gateway, scope, "chat")
    await serve(flow, send, partial(_answer, flow, scope, receive, send), render=send_anthropic_error)


async def _answer(flow: Flow, scope: Scope, receive: Receive, send: Send) -> None:
    await flow.admit_address(scope)
    await flow.authenticate()
    raw = flow.exchange.request_body = await read_body(receive, flow.headers, flow.body_limit, flow.body_clock)
    client = flow.watch_client(receive)
    body, chat = parse_messages_body(raw)
    request, route = flow.route("chat", chat, None)
    native = request.native = NativeCall("anthropic", body, _passed_headers(flow.headers))
    await flow.admit(model=flow.exchange.model, body=chat, size=len(raw))
    if request.stream:
        chunks = await flow.open_stream(request, route)
        start = {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + flow.response_headers()}
        if native.answered:
            flow.exchange.wire = "anthropic"
            await relay(chunks, client, send, anthropic_ending, start, flow.gateway.streams)
        else:
            stream = ChatToMessagesStream(model=str(body.get("model")), message_id="msg_" + random_hex(96))
            await relay(chunks, client, send, anthropic_ending, start, flow.gateway.streams,
                        ChatReads(stream.feed, stream.feed_text).read, partial(_finished, stream))
        return
    # The response cache keys OpenAI bodies: a native reply must never answer a chat call (docs/front-doors.md).
    reply = await flow.call(request, route, cached=False)
    if native.answered:
        flow.exchange.wire = "anthropic"
    else:
        try:
            reply = orjson.dumps(chat_to_message(orjson.loads(reply), model=str(body.get("model"))))
        except ChatReplyError as exc:
            raise UpstreamProtocolError(f"The upstream's reply could not be read as a chat completion: {exc}") from exc
    await send_bytes(send, 200, reply,
                     [JSON_TYPE, *flow.response_headers((b"content-length", str(len(reply)).encode()))])


async def _finished(stream: ChatToMessagesStream) -> bytes:
    """The events that end a translated stream (`relay`'s `last`)."""
    return stream.finish()


async def count_tokens(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /v1/messages/count_tokens`: the upstream's own count from an Anthropic deployment of the model, else
    an estimate (header `X-Sluice-Token-Count: estimate`)."""
    flow = Flow.begin(gateway, scope, None, observers=())
    await serve(flow, send, partial(_count, flow, scope, receive, send), render=send_anthropic_error)


async def _count(flow: Flow, scope: Scope, receive: Receive, send: Send) -> None:
    await flow.admit_address(scope)
    await flow.authenticate()
    raw = await read_body(receive, flow.headers, flow.body_limit, flow.body_clock)
    body, chat = parse_messages_body(_with_max_tokens(raw))
    body.pop("max_tokens", None)
    chat.pop("max_tokens", None)
    request, route = flow.route("chat", chat, None)
    request.native = NativeCall("anthropic", body, _passed_headers(flow.headers))
    counted = await _upstream_count(flow, request, route)
    extra: Headers = []
    if counted is not None:
        reply = counted
    else:  # about four bytes of request per token, as the token limits estimate it
        reply, extra = orjson.dumps({"input_tokens": max(1, len(raw) // 4)}), [ESTIMATE_HEADER]
    await send_bytes(send, 200, reply,
                     [JSON_TYPE, *flow.response_headers((b"content-length", str(len(reply)).encode()), *extra)])


async def _upstream_count(flow: Flow, request: UpstreamRequest, route: ModelRoute) -> bytes | None:
    """The count of the model's first usable Anthropic deployment, or None when it has none."""
    for endpoint in route.pool.endpoints:
        provider = flow.gateway.providers.get(endpoint.owner)
        if isinstance(provider, AnthropicProvider) and endpoint.usable:
            request.body["model"] = endpoint.target
            flow.exchange.provider, flow.exchange.upstream_model = endpoint.owner, endpoint.target
            return await flow.watched(provider.count_tokens(request))
    return None


def _with_max_tokens(raw: bytes) -> bytes:
    """count_tokens takes no `max_tokens`; the translation wants one."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if isinstance(body, dict) and "max_tokens" not in body:
        body["max_tokens"] = 1
        return orjson.dumps(body)
    return raw
