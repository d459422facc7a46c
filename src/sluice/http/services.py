"""The service gateway's edge: a request a route rule matched, proxied to one instance of its service.

Like provider passthrough it is raw ASGI over a `Flow`: the caller's method, path (rewritten by the rule), query,
headers (hop-by-hop ones and the caller's credentials dropped, forwarding and identity headers set, the rule's
edits applied) and body go upstream; the reply comes back as the instance sent it, streamed. Bodies up to
`BUFFERED_BODY` bytes are read first, so an idempotent request can be tried on another instance, and so is one
whose whole body came in its first message; other bodies are streamed upstream as they arrive (never retried).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial
from urllib.parse import quote

import orjson
from pyreqwest.exceptions import RequestError

from sluice.errors import GatewayError, PayloadTooLarge
from sluice.gateway import Gateway
from sluice.http.asgi import ClientDisconnected, Message, Receive, Scope, Send, read_body, too_large
from sluice.http.body_clock import BodyClock
from sluice.http.passthrough import with_ours
from sluice.http.relayed import is_stream, opening, relay_reply, rest
from sluice.http.service_cache import REVALIDATED, look_up
from sluice.keys.principal import Principal
from sluice.pipeline.answer import serve
from sluice.pipeline.flow import Flow
from sluice.pipeline.service_call import call_service
from sluice.providers.passthrough import CALLER_ONLY, HOP_BY_HOP, dropped_from, forwarded_for, reply_headers
from sluice.providers.upstream import OpenStream, body_chunks, transport_error
from sluice.services.options import HeaderEdits, RouteConfig
from sluice.services.registry import Service
from sluice.services.rules import Rule

logger = logging.getLogger("sluice.services")

BUFFERED_BODY = 64 * 1024
"""Request bodies up to this size (declared) are read before the call, so a retry can send them again."""
WHOLE_REPLY = 256 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_NO_BODY_STATUSES = frozenset({204, 304})
_KEYED_ONLY = frozenset({b"authorization", b"x-api-key"})
"""Dropped on routes that authenticate the caller: the gateway's credentials never reach a service."""


async def handle(gateway: Gateway, rule: Rule, scope: Scope, receive: Receive, send: Send,
                 headers: dict[bytes, bytes] | None = None) -> None:
    """One request to a service route (`headers`: the request's by name, when the dispatcher made them)."""
    flow = Flow.begin(gateway, scope, "service", headers=headers)
    await serve(flow, send, partial(_answer, flow, rule, scope, receive, send))


async def admitted(flow: Flow, rule: Rule, scope: Scope) -> Principal | None:
    """The caller of a service route, admitted: the address's limits, the route's auth (`public`, `key`: a key or
    a JWT, `jwt`: a JWT only), the key's services scope, its limits. None on a public route."""
    route = rule.config
    await flow.admit_address(scope)
    if route.auth == "public":
        return None
    principal = await flow.authenticate(jwt_only=route.auth == "jwt")
    for name in route.services:  # every side of a split: a scoped key is refused always, not 10 % of the time
        principal.check_service(name)
    await flow.admit()
    return principal


async def _answer(flow: Flow, rule: Rule, scope: Scope, receive: Receive, send: Send) -> None:
    route = rule.config
    if route.websocket:
        error = GatewayError(f"{scope['path']} is a WebSocket route: connect with a WebSocket handshake.",
                             status=426, type="invalid_request_error", code="upgrade_required")
        error.headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
        raise error
    principal = await admitted(flow, rule, scope)
    registry = flow.gateway.services
    assert registry is not None
    service = registry.services[rule.service_for(flow.headers)]
    exchange = flow.exchange
    exchange.provider = service.name
    exchange.route = route.path or route.path_regex
    logger.debug("route %s (rule %d) -> service %s", exchange.route, rule.index, service.name)
    method = scope["method"]
    body, retryable = await _body(flow, route, method, receive)
    path = with_query(scope, rule.upstream_path(raw_path(scope)))
    headers = upstream_headers(scope, flow, principal, route)
    edits = route.response_headers
    cached = await look_up(flow, rule, service.name, method, path, headers) if route.cache is not None else None
    if cached is not None:
        edit = partial(edited_headers, edits=edits)
        if cached.entry is not None and cached.usable:
            return await cached.answer(send, cached.entry, "HIT", edit)
        headers = cached.conditional(headers)
    reply = await call_service(flow, service, method, path, headers, body, retryable=retryable,
                               read_seconds=route.timeout_seconds)
    received = reply_headers(reply)
    verdict = None
    if cached is not None:
        if reply.status == 304 and cached.revalidating:
            await flow.watched(_read(service, reply))
            return await cached.answer(send, cached.refreshed(received), REVALIDATED, edit)
        verdict = cached.storable(reply.status, received)
        answer = with_ours(edited_headers(received, edits) + cached.missed(), flow)
    else:
        answer = with_ours(edited_headers(received, edits), flow)
    length = reply.response.get_header("content-length")
    if method == "HEAD" or reply.status in _NO_BODY_STATUSES or verdict is not None or (
            length is not None and length.isdigit() and int(length) <= WHOLE_REPLY):
        content = await flow.watched(_read(service, reply))
        if verdict is not None and cached is not None and (method == "HEAD" or len(content) == int(length or 0)):
            cached.store(reply.status, received, content, verdict)
    elif length is None and not is_stream(reply):
        content, following = await opening(reply, service.name)
        if following is not None:
            return await relay_reply(flow, reply, answer, rest(reply, service.name, content, following), receive,
                                     send, following)
    else:
        return await relay_reply(flow, reply, answer, body_chunks(reply, service.name), receive, send)
    exchange.response_body = content
    await send({"type": "http.response.start", "status": reply.status, "headers": answer})
    await send({"type": "http.response.body", "body": content})


async def _read(service: Service, reply: OpenStream) -> bytes:
    try:
        return await reply.read()
    except RequestError as exc:
        raise transport_error(exc, service.name) from exc
    finally:
        await reply.close()


async def _body(flow: Flow, route: RouteConfig, method: str, receive: Receive
                ) -> tuple[bytes | AsyncIterator[bytes], bool]:
    """The body to send (bytes when small enough to read first, or when it came whole in the request's first
    message, else an iterator) and whether the call may be tried again on another instance."""
    limit = route.max_body_bytes if route.max_body_bytes is not None else flow.body_limit
    headers = flow.headers
    declared = headers.get(b"content-length")
    size = int(declared) if declared is not None and declared.isdigit() else None
    if size is not None and size > limit:
        raise too_large(limit)
    retryable = method in IDEMPOTENT or route.retry_non_idempotent
    if size is not None and size <= BUFFERED_BODY:
        body = flow.exchange.request_body = await read_body(receive, headers, limit, flow.body_clock)
    elif size is None and b"transfer-encoding" not in headers:
        # Neither header: the request has no body (RFC 9112 §6.3), so its one message needs no body clock.
        body = flow.exchange.request_body = await read_body(receive, headers, limit)
    else:
        first = await _first_message(receive, flow.body_clock)
        if first["type"] == "http.disconnect":
            raise ClientDisconnected
        body = first.get("body", b"")
        if len(body) > limit:
            raise too_large(limit)
        if first.get("more_body", False):
            return _streamed(receive, limit, body), False
        flow.exchange.request_body = body  # all of it came at once: sent as bytes, no stream to bridge
    flow.watch_client(receive)
    return body, retryable


async def _first_message(receive: Receive, clock: BodyClock) -> Message:
    """The request's first message, within the body read timeout (RequestTimeout, 408, past it)."""
    task = clock.start()
    try:
        return await receive()
    except asyncio.CancelledError:
        if clock.timed_out(task):
            raise clock.refusal() from None
        raise
    finally:
        clock.stop(task)


async def _streamed(receive: Receive, limit: int, first: bytes) -> AsyncIterator[bytes]:
    """The request body as it arrives (`first`: what its first message brought), refused past `limit` bytes (the
    upstream call is then aborted)."""
    size = len(first)
    if first:
        yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"The request body is larger than this route accepts ({limit} bytes).")
            yield chunk
        if not message.get("more_body", False):
            return


_DROPPED = HOP_BY_HOP | CALLER_ONLY
_DROPPED_PUBLIC = _DROPPED - _KEYED_ONLY  # a public route's Authorization is the service's own business


def upstream_headers(scope: Scope, flow: Flow, principal: Principal | None, route: RouteConfig
                     ) -> list[tuple[str, str]]:
    """The caller's end-to-end headers, forwarding info, the caller's identity (never its key), the route's
    edits; `X-Sluice-*` headers a caller sent are dropped so no one can claim an identity."""
    caller: list[tuple[bytes, bytes]] = scope["headers"]
    by_name = flow.headers
    drop = dropped_from(caller, by_name, _DROPPED if principal is not None else _DROPPED_PUBLIC)
    out = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in caller
           if name not in drop and not name.startswith(b"x-sluice-")]
    client = scope.get("client")
    out.append(("x-forwarded-for", forwarded_for(caller, client[0] if client else "unknown", by_name)))
    out.append(("x-forwarded-proto", scope.get("scheme", "http")))
    host = by_name.get(b"host")
    if host:
        out.append(("x-forwarded-host", host.decode("latin-1")))
    out.append(("x-request-id", flow.request_id.decode()))
    trace = flow.exchange.trace
    if trace is not None:
        if b"traceparent" in by_name:
            out = [(name, value) for name, value in out if name != "traceparent"]
        out.append(("traceparent", trace.traceparent_for_upstream()))
    if principal is not None:
        out.append(("x-sluice-key-id", _header_safe(principal.key_id)))
        if principal.name:
            out.append(("x-sluice-key-name", _header_safe(principal.name)))
        if principal.jwt_subject:
            out.append(("x-sluice-subject", _header_safe(principal.jwt_subject)))
    edits = route.request_headers
    if edits.remove or edits.add:
        removed = {name.lower() for name in (*edits.remove, *edits.add)}
        out = [(name, value) for name, value in out if name.lower() not in removed] + list(edits.add.items())
    return out


def _header_safe(value: str) -> str:
    """`value` as a header value: printable ASCII kept, anything else (CR, LF, non-ASCII from a token's claims)
    percent-encoded, so a claim can never add a header of its own."""
    return value if value.isascii() and value.isprintable() else quote(value, safe=" !#$&'()*+,/:;=?@[]~")


def edited_headers(headers: list[tuple[bytes, bytes]], edits: HeaderEdits) -> list[tuple[bytes, bytes]]:
    """`headers` with a route's edits applied: the named ones removed, the added ones set."""
    if not edits.remove and not edits.add:
        return headers
    removed = {name.lower().encode("latin-1") for name in (*edits.remove, *edits.add)}
    kept = [(name, value) for name, value in headers if name not in removed]
    return kept + [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in edits.add.items()]


def raw_path(scope: Scope) -> str:
    """The request path as the caller sent it (undecoded), or the decoded one quoted again."""
    raw: bytes | None = scope.get("raw_path")
    if raw:
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            pass
    return quote(scope["path"])


def with_query(scope: Scope, path: str) -> str:
    """`path` with the request's query string, if it has one."""
    query: bytes = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def service_info(gateway: Gateway) -> bytes:
    """`GET /`: the gateway's name, version and how many service routes it has."""
    routes = len(gateway.services.rules.rules) if gateway.services is not None else 0
    return orjson.dumps({"name": "sluice", "version": gateway.version, "routes": routes,
                         "services": sorted(gateway.services.services) if gateway.services is not None else []})
