"""`POST /v1/responses` and `GET /v1/responses/{id}`: OpenAI's Responses API as a front door on the one path.

The request is translated to chat (frontdoors/responses_request.py), after the conversation `previous_response_id`
names, and goes the chat route's way to any deployment; the chat reply or stream comes back as a `response` object
or the Responses event stream. Answers are kept (`store`, the default) in the shared database, or in the process
without one (frontdoors/responses_store.py), before the caller sees them complete.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from functools import partial
from typing import Any

import orjson

from sluice.errors import GatewayError, InvalidRequest, NotFound, UpstreamProtocolError
from sluice.frontdoors.chat_reads import ChatReads
from sluice.frontdoors.responses_native import ending_response, native_body, native_turn
from sluice.frontdoors.responses_reply import chat_to_response, chat_to_response_bytes, conversation_turn
from sluice.frontdoors.responses_request import ResponsesRequestError, responses_to_chat
from sluice.frontdoors.responses_store import StoredResponse
from sluice.frontdoors.responses_stream import ChatToResponsesStream
from sluice.gateway import Gateway
from sluice.http.asgi import JSON_TYPE, ASGIApp, Receive, Scope, Send, read_body, send_bytes
from sluice.http.duplicate_keys import refuse_duplicate_keys
from sluice.ids import random_hex
from sluice.keys.principal import Principal
from sluice.pipeline.answer import relay, serve
from sluice.pipeline.flow import Flow
from sluice.providers.base import JSONObject, NativeCall
from sluice.streaming import SSE_HEADERS, NotSSE, SSEDecoder

RESPONSES_PATH = "/v1/responses"
RESPONSE_PREFIX = "/v1/responses/"


def responses_routes(gateway: Gateway) -> dict[str, ASGIApp]:
    """The raw ASGI handler of the Responses API's POST route, by path."""
    return {RESPONSES_PATH: partial(handle, gateway)}


def _parse(raw: bytes) -> JSONObject:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request. The body must be valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    refuse_duplicate_keys(raw, body)
    return body


async def handle(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """One Responses API call, from bytes in to a `response` object or its event stream out."""
    flow = Flow.begin(gateway, scope, "chat")
    await serve(flow, send, partial(_answer, flow, scope, receive, send))


async def _answer(flow: Flow, scope: Scope, receive: Receive, send: Send) -> None:
    await flow.admit_address(scope)
    principal = await flow.authenticate()
    raw = flow.exchange.request_body = await read_body(receive, flow.headers, flow.body_limit, flow.body_clock)
    client = flow.watch_client(receive)
    body = _parse(raw)
    store = flow.gateway.responses
    history = None
    previous = body.get("previous_response_id")
    if previous is not None:
        found = await store.find(str(previous), principal.key_id)
        if found is None:
            raise NotFound(f"Previous response with id '{previous}' not found.", param="previous_response_id",
                           code="previous_response_not_found")
        history = found.conversation
    try:
        chat = responses_to_chat(body, history)
    except ResponsesRequestError as exc:
        raise InvalidRequest(str(exc), param=exc.param) from None
    request, route = flow.route("chat", chat, None)
    native = request.native = NativeCall("responses", native_body(body, history))
    await flow.admit(model=flow.exchange.model, body=chat, size=len(raw))
    response_id, created = "resp_" + random_hex(192), int(time.time())
    keep = body.get("store") is not False
    if request.stream:
        chunks = await flow.open_stream(request, route)
        if native.answered:
            await _relay_native(flow, chunks, client, send, partial(_kept_native, chat, principal) if keep else None)
            return
        translator = ChatToResponsesStream(request=body, response_id=response_id, created_at=created)
        kept = partial(_kept_translated, response_id, chat, translator, principal) if keep else None
        start = {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + flow.response_headers()}
        await relay(chunks, client, send, partial(_ending, translator), start, flow.gateway.streams,
                    ChatReads(translator.feed, translator.feed_text).read, partial(_finished, translator, flow, kept))
        return
    # The response cache keys chat bodies: a native answer must never answer a chat call.
    raw_reply = await flow.call(request, route, cached=False)
    if native.answered:
        await _send_native(flow, send, raw_reply, partial(_kept_native, chat, principal) if keep else None)
        return
    reply = orjson.loads(raw_reply)
    try:
        if keep:
            response = chat_to_response(reply, request=body, response_id=response_id, created_at=created)
        else:  # nothing kept: the bytes without the object
            encoded = chat_to_response_bytes(reply, request=body, response_id=response_id, created_at=created)
        message = reply["choices"][0]["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise UpstreamProtocolError("The upstream's reply could not be read as a chat completion.") from exc
    if keep:
        await store.save(StoredResponse(response_id, principal.key_id, conversation_turn(chat, message), response))
        encoded = orjson.dumps(response)
    await send_bytes(send, 200, encoded,
                     [JSON_TYPE, *flow.response_headers((b"content-length", str(len(encoded)).encode()))])


def _kept_translated(response_id: str, chat: dict[str, Any], translator: ChatToResponsesStream, principal: Principal,
                     response: dict[str, Any]) -> StoredResponse:
    """What Sluice keeps of a translated stream's turn."""
    turn = conversation_turn(chat, translator.final_message())
    return StoredResponse(response_id, principal.key_id, turn, response)


def _kept_native(chat: dict[str, Any], principal: Principal, response: dict[str, Any]) -> StoredResponse:
    """What Sluice keeps of a natively answered turn, under the upstream's own response id."""
    return StoredResponse(str(response.get("id")), principal.key_id, native_turn(chat, response), response)


async def _send_native(flow: Flow, send: Send, reply: bytes,
                       kept: Callable[[dict[str, Any]], StoredResponse] | None) -> None:
    """The upstream's `response` object as it came, kept first (unless `store: false`)."""
    flow.exchange.wire = "responses"
    if kept is not None:
        try:
            response = orjson.loads(reply)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError("The upstream's reply could not be read as a Responses object.") from exc
        if isinstance(response, dict):
            await flow.gateway.responses.save(kept(response))
    await send_bytes(send, 200, reply,
                     [JSON_TYPE, *flow.response_headers((b"content-length", str(len(reply)).encode()))])


async def _relay_native(flow: Flow, chunks: AsyncGenerator[bytes, None], client: Any, send: Send,
                        kept: Callable[[dict[str, Any]], StoredResponse] | None) -> None:
    """The upstream's Responses event stream relayed byte for byte; the answer kept before its ending event goes
    out (unless `store: false`)."""
    flow.exchange.wire = "responses"
    start = {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + flow.response_headers()}
    await relay(_kept_stream(chunks, flow, kept) if kept is not None else chunks, client, send, _native_ending, start,
                flow.gateway.streams)


async def _kept_stream(chunks: AsyncGenerator[bytes, None], flow: Flow,
                       kept: Callable[[dict[str, Any]], StoredResponse]) -> AsyncGenerator[bytes, None]:
    """The native stream, each read as it came; the read that completes the ending event waits until the answer
    is kept."""
    decoder = SSEDecoder()
    try:
        async for data in chunks:
            try:
                events = decoder.feed(data)
            except NotSSE:  # the provider's relay ends such a stream with an error
                events = []
            for event in events:
                response = ending_response(event)
                if response is not None:
                    await flow.gateway.responses.save(kept(response))
            yield data
    finally:
        await chunks.aclose()


def _native_ending(tail: bytes, error: GatewayError) -> bytes:
    """The `error` event that ends a broken native stream."""
    return (b"" if tail.endswith(b"\n\n") else b"\n\n") + b"event: error\ndata: " + orjson.dumps({
        "type": "error", "code": error.code, "message": error.message, "param": None,
        "error": {"type": error.type, "code": error.code, "message": error.message, "param": None}}) + b"\n\n"


def _ending(translator: ChatToResponsesStream, tail: bytes, error: GatewayError) -> bytes:
    """`response.failed` and the `error` event that end a broken stream."""
    ending = translator.fail(error.message, error.code)
    if not ending:  # the stream had ended, and then its answer could not be stored
        ending = b"event: error\ndata: " + orjson.dumps({
            "type": "error", "code": error.code, "message": error.message, "param": None,
            "error": {"type": error.type, "code": error.code, "message": error.message, "param": None}}) + b"\n\n"
    return (b"" if tail.endswith(b"\n\n") else b"\n\n") + ending


async def _finished(translator: ChatToResponsesStream, flow: Flow,
                    kept: Callable[[dict[str, Any]], StoredResponse] | None) -> bytes:
    """The events that end a translated stream (`relay`'s `last`); the answer (`kept`, unless `store: false`)
    stored before they are sent, so a next turn never misses it."""
    ending = translator.finish()
    if kept is not None:
        await flow.gateway.responses.save(kept(_last_response(ending)))
    return ending


def _last_response(events: bytes) -> dict[str, Any]:
    """The `response` object of the last event in `events` (response.completed or response.incomplete)."""
    data = events.rstrip().rsplit(b"\ndata: ", 1)[-1]
    response: dict[str, Any] = orjson.loads(data)["response"]
    return response


async def get_response(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes], principal: Principal | None
                       ) -> bytes:
    """`GET /v1/responses/{id}`: a kept answer of this key's."""
    assert principal is not None
    response_id = scope["path"][len(RESPONSE_PREFIX):]
    found = await gateway.responses.find(response_id, principal.key_id)
    if found is None:
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id", code="response_not_found")
    return orjson.dumps(found.response)
