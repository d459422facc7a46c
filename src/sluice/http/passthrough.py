"""`/provider/{name}/{path}`: any method, query and body forwarded to one provider, as a raw ASGI handler.

Like the OpenAI hot routes this skips FastAPI: it is on the benchmark's hot path. Errors raised before the
upstream answers become OpenAI-shaped responses; once the upstream's status is sent, a broken upstream aborts
the response (the client sees a truncated body, as from any proxy) instead of appending bytes of our own.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import quote

from sluice.errors import InvalidRequest, NotFound
from sluice.gateway import Gateway
from sluice.http.asgi import ASGIApp, Receive, Scope, Send, read_body
from sluice.http.relayed import is_stream, opening, relay_reply, rest
from sluice.pipeline.answer import serve
from sluice.pipeline.flow import Flow, Headers
from sluice.providers.passthrough import Forwarded, PassthroughTarget, reply_headers
from sluice.providers.upstream import OpenStream

PREFIX = "/provider/"
WHOLE_BODY_LIMIT = 256 * 1024
"""Replies with a known length up to this size are read whole and sent in one message; longer or unsized
replies (SSE, chunked) are relayed chunk by chunk as they arrive."""
_NO_BODY_STATUSES = frozenset({204, 304})


def passthrough_route(gateway: Gateway) -> ASGIApp:
    """The handler for every path under `/provider/`."""
    return partial(handle, gateway)


def split_target(scope: Scope) -> tuple[str, str]:
    """(provider name, raw suffix) of `/provider/{name}{suffix}`, from the undecoded request path."""
    raw_path: bytes | None = scope.get("raw_path")
    try:
        path = raw_path.decode("ascii") if raw_path else quote(scope["path"])
    except UnicodeDecodeError:
        raise InvalidRequest("The request path must be ASCII (percent-encode other bytes).",
                             code="invalid_path") from None
    if not path.startswith(PREFIX):
        raise InvalidRequest("This provider path is not allowed: encoded slashes are not allowed.", code="invalid_path")
    name, slash, rest = path[len(PREFIX):].partition("/")
    return name, slash + rest


def find_target(gateway: Gateway, name: str) -> PassthroughTarget:
    if name not in gateway.passthrough:
        raise NotFound(f"There is no provider named {name!r}.", code="provider_not_found")
    target = gateway.passthrough[name]
    if target is None:
        raise NotFound(f"Provider {name!r} is the built-in mock provider; it has no upstream to pass requests to. "
                       "Use it through /v1/chat/completions, /v1/completions or /v1/embeddings.",
                       code="no_upstream")
    return target


def forwarded_of(scope: Scope, headers: dict[bytes, bytes], request_id: bytes) -> Forwarded:
    client = scope.get("client")
    host = headers.get(b"host")
    return Forwarded(client=client[0] if client else None, proto=scope.get("scheme", "http"),
                     host=host.decode("latin-1") if host else None, request_id=request_id.decode())


async def handle(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """One passthrough request: auth, path checks, the upstream call, then the reply relayed unchanged."""
    flow = Flow.begin(gateway, scope, "passthrough")
    await serve(flow, send, partial(_answer, flow, scope, receive, send))


async def _answer(flow: Flow, scope: Scope, receive: Receive, send: Send) -> None:
    await flow.admit_address(scope)
    principal = await flow.authenticate()
    name, suffix = split_target(scope)
    target = find_target(flow.gateway, name)
    flow.exchange.provider = name
    principal.check_provider(name)
    await flow.admit()
    url = target.url(suffix, scope["query_string"])
    body = flow.exchange.request_body = await read_body(receive, flow.headers, flow.body_limit, flow.body_clock)
    flow.watch_client(receive)
    upstream_headers = target.headers(scope["headers"], forwarded_of(scope, flow.headers, flow.request_id),
                                      flow.headers)
    reply = await flow.call_raw(target, scope["method"], url, upstream_headers, body)
    await respond(flow, target, reply, scope, receive, send)


async def respond(flow: Flow, target: PassthroughTarget, reply: OpenStream, scope: Scope, receive: Receive,
                  send: Send) -> None:
    """The upstream's status, headers and body, unchanged but for hop-by-hop headers (and Sluice's request id,
    when the upstream sent none, its overhead and rate-limit headers)."""
    headers = with_ours(reply_headers(reply), flow)
    if _whole(scope, reply):
        body = await flow.watched(target.read(reply))
    elif reply.response.get_header("content-length") is None and not is_stream(reply):
        body, following = await opening(reply, target.name)
        if following is not None:
            return await relay_reply(flow, reply, headers, rest(reply, target.name, body, following), receive, send,
                                     following)
    else:
        return await relay_reply(flow, reply, headers, target.chunks(reply), receive, send)
    flow.exchange.response_body = body
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def with_ours(headers: Headers, flow: Flow) -> Headers:
    """An upstream's reply `headers` and the flow's own after them (its request id only if the upstream sent
    none)."""
    ours = flow.response_headers()
    for name, _ in headers:
        if name == b"x-request-id":
            return headers + [header for header in ours if header[0] != b"x-request-id"]
    return headers + ours


def _whole(scope: Scope, reply: OpenStream) -> bool:
    """Whether to read the reply whole: no body, or a known length small enough to hold."""
    if scope["method"] == "HEAD" or reply.status in _NO_BODY_STATUSES:
        return True
    length = reply.response.get_header("content-length")
    return length is not None and length.isdigit() and int(length) <= WHOLE_BODY_LIMIT
