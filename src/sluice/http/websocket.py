"""The service gateway's WebSocket edge: a handshake a `websocket: true` route matched, proxied to one instance of
its service, then every message relayed both ways until either side closes.

The handshake goes through a `Flow` like an HTTP service request (http/services.py): the address's limits, the
route's auth on the handshake's headers, an instance from the service's pool (`on_an_instance`: breaker, failover
to another instance when one cannot be reached or answers 502/503/504), the same forwarding and identity headers.
Only once the upstream accepted is the client accepted, with the subprotocol the upstream chose. A refused
handshake is answered with its HTTP status (the `websocket.http.response` extension; both granian and uvicorn
have it) or, on a server without it, accepted and closed at once with 4000 + that status (4401, 4403, 4502 …).

Text and binary frames keep their kind; close codes and reasons pass through (a close without one, or a
connection lost, becomes 1000, or 1001 towards the upstream and 1014 towards the client); each side's pings are
answered by its own library (the ASGI server's, `websockets`' for the upstream, which also pings every 20 s).
A message over the route's `websocket_max_message_bytes` closes both sides with 1009; no message either way
for `websocket_idle_seconds` closes both with 1001. The connection is one exchange for the observers, ended
when it closes: status 101, its duration, and a JSON summary as its response body (`summary`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from time import monotonic

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from sluice.errors import (
    GatewayError,
    NotFound,
    PermissionDenied,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from sluice.gateway import Gateway
from sluice.http.asgi import Message, Receive, Scope, Send, send_error
from sluice.http.cors import CorsEdge
from sluice.http.services import admitted, edited_headers, raw_path, upstream_headers, with_query
from sluice.pipeline.answer import serve
from sluice.pipeline.flow import Flow, Headers
from sluice.pipeline.service_call import on_an_instance
from sluice.routing.endpoint import Endpoint
from sluice.services.registry import Service
from sluice.services.rules import Rule

logger = logging.getLogger("sluice.http")

OPERATION = "websocket"
CLOSE_SECONDS = 5.0
"""How long a close handshake with the upstream may take before its connection is dropped."""
_HANDSHAKE_REPLY_DROPPED = frozenset({
    "connection", "upgrade", "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions", "date",
    "server", "content-length", "transfer-encoding", "keep-alive"})
"""Upstream handshake reply headers the ASGI server writes itself (or that describe the upstream connection)."""
_UNSENDABLE = frozenset({1004, 1005, 1006, 1015})
"""Close codes a peer reports but no close frame may carry (RFC 6455 §7.4.1)."""


async def handle(gateway: Gateway, rule: Rule, scope: Scope, receive: Receive, send: Send,
                 cors: CorsEdge | None = None) -> None:
    """One WebSocket connection to a `websocket: true` route; `cors`, the app's CORS edge, judges its `Origin`."""
    if (await receive())["type"] != "websocket.connect":
        return  # gone before its handshake reached the application
    client = _Client(scope, send)
    flow = Flow.begin(gateway, client.http_scope, OPERATION)
    await serve(flow, send, partial(_proxy, flow, rule, client, receive, cors), client.refuse)


async def refuse_unrouted(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """A handshake no `websocket: true` route matches: refused with 404 (4404)."""
    if (await receive())["type"] != "websocket.connect":
        return
    client = _Client(scope, send)
    flow = Flow.begin(gateway, client.http_scope, None, observers=(), counted=False)
    error = NotFound(f"No WebSocket route matches {scope['path']}.", code="unknown_route")
    flow.failed(error)
    await client.refuse(send, error, flow.response_headers(error=error))


class _Client:
    """The client's side of the connection: its handshake (as the HTTP request it is) and what was sent to it."""

    __slots__ = ("scope", "http_scope", "send", "accepted")

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        scheme = "https" if scope.get("scheme") == "wss" else "http"
        self.http_scope: Scope = {**scope, "method": "GET", "scheme": scheme}
        """The handshake as a GET request, for the flow and the forwarding headers."""
        self.send = send
        self.accepted = False

    async def accept(self, subprotocol: str | None, headers: Headers) -> None:
        await self.send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": headers})
        self.accepted = True

    async def close(self, code: int, reason: str) -> None:
        try:
            await self.send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:  # the client went away meanwhile: nothing to tell it
            logger.debug("websocket close not sent", exc_info=True)

    async def refuse(self, send: Send, error: GatewayError, headers: Headers) -> None:
        """The handshake's answer for `error`: its status and OpenAI-shaped body, or a close with 4000 + status."""
        if self.accepted:  # a bug past the handshake: no HTTP answer is possible any more
            await self.close(1011, "gateway error")
            return
        if "websocket.http.response" in (self.scope.get("extensions") or {}):
            await send_error(partial(_as_websocket_response, send), error, headers)
            return
        await self.accept(None, headers)
        await self.close(4000 + error.status, _short(error.message))


async def _as_websocket_response(send: Send, message: Message) -> None:
    """An `http.response.*` message as the `websocket.http.response.*` one that refuses a handshake."""
    await send({**message, "type": "websocket." + message["type"]})


async def _proxy(flow: Flow, rule: Rule, client: _Client, receive: Receive, cors: CorsEdge | None) -> None:
    route = rule.config
    scope = client.http_scope
    refusal = cors.refuses_websocket(rule.index, flow.headers) if cors is not None else None
    if refusal is not None:  # before auth: another site's page gets no further, whatever cookies it carries
        raise PermissionDenied(f"WebSocket handshake refused: {refusal}.", code="cors_origin_refused")
    principal = await admitted(flow, rule, scope)
    registry = flow.gateway.services
    assert registry is not None
    service = registry.services[rule.service_for(flow.headers)]
    exchange = flow.exchange
    exchange.provider = service.name
    exchange.route = route.path or route.path_regex
    logger.debug("websocket route %s (rule %d) -> service %s", exchange.route, rule.index, service.name)
    path = with_query(scope, rule.upstream_path(raw_path(scope)))
    headers = [(name, value) for name, value in upstream_headers(scope, flow, principal, route)
               if not name.lower().startswith("sec-websocket-")]
    offered = [Subprotocol(name) for name in client.scope.get("subprotocols") or ()]
    opener = partial(_open, service, path, headers, offered, route.websocket_max_message_bytes)
    upstream = await on_an_instance(flow, service, opener, _switched, _dropped, retryable=True)
    tally = _Tally(monotonic())
    try:
        reply = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                 for name, value in upstream.response.headers.raw_items()
                 if name.lower() not in _HANDSHAKE_REPLY_DROPPED] if upstream.response is not None else []
        answer = edited_headers(reply, route.response_headers)
        ours = flow.response_headers()
        if any(name == b"x-request-id" for name, _ in answer):
            ours = [header for header in ours if header[0] != b"x-request-id"]
        await client.accept(upstream.subprotocol, answer + ours)
        exchange.status = 101
        await _relay(client, receive, upstream, route.websocket_max_message_bytes, route.websocket_idle_seconds,
                     tally, flow.gateway.closing)
    finally:
        await upstream.close()
        exchange.response_body = tally.summary(upstream.subprotocol)


async def _open(service: Service, path: str, headers: list[tuple[str, str]], offered: list[Subprotocol],
                max_size: int, endpoint: Endpoint) -> ClientConnection:
    """The upstream connection to one instance; its failures as the GatewayErrors `on_an_instance` judges."""
    url = "ws" + endpoint.target.removeprefix("http") + path  # http://… → ws://…, https://… → wss://…
    try:
        return await connect(url, additional_headers=headers, subprotocols=offered or None, compression=None,
                             user_agent_header=None, proxy=None, open_timeout=service.config.timeout.connect,
                             max_size=max_size, close_timeout=CLOSE_SECONDS)
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise UpstreamError(f"Service {service.name!r} refused the WebSocket handshake with HTTP {status}.",
                            status=status) from exc
    except InvalidHandshake as exc:
        raise UpstreamError(f"Service {service.name!r} answered the WebSocket handshake wrongly: {exc}.",
                            status=502, code="bad_handshake") from exc
    except TimeoutError as exc:
        raise UpstreamTimeout(f"Service {service.name!r} did not complete the WebSocket handshake in time.") \
            from exc
    except OSError as exc:
        raise UpstreamUnreachable(f"Service {service.name!r} could not be reached: {type(exc).__name__}.") from exc


def _switched(upstream: ClientConnection) -> int:
    return 101


async def _dropped(upstream: ClientConnection) -> None:
    await upstream.close()


@dataclass(slots=True)
class _Tally:
    """What crossed the connection, for the exchange's summary."""

    last: float
    """monotonic() of the last message either way (the idle clock)."""
    to_upstream_messages: int = 0
    to_upstream_bytes: int = 0
    to_client_messages: int = 0
    to_client_bytes: int = 0
    ending: _Ending | None = None

    def summary(self, subprotocol: str | None) -> bytes:
        """The response body of the connection's exchange: messages and bytes each way, how it closed."""
        ending = self.ending
        return orjson.dumps({
            "client_to_upstream": {"messages": self.to_upstream_messages, "bytes": self.to_upstream_bytes},
            "upstream_to_client": {"messages": self.to_client_messages, "bytes": self.to_client_bytes},
            "subprotocol": subprotocol,
            "close": None if ending is None else {"by": ending.by, "code": ending.code, "reason": ending.reason},
        })


@dataclass(frozen=True, slots=True)
class _Ending:
    """How the connection ends: who ended it, with what, and which sides still have to be told."""

    by: str
    """`client`, `upstream` or `gateway` (a message over the limit, the idle timeout, the upstream library)."""
    code: int
    reason: str
    tell_client: bool
    tell_upstream: bool


async def _relay(client: _Client, receive: Receive, upstream: ClientConnection, limit: int, idle: float,
                 tally: _Tally, closing: asyncio.Event) -> None:
    """Relay both ways until one side closes (or the limit, the idle timeout or the gateway stopping ends it),
    then close the other."""
    pumps = [asyncio.create_task(_from_client(receive, upstream, limit, tally)),
             asyncio.create_task(_from_upstream(upstream, client.send, tally)),
             asyncio.create_task(_idle(tally, idle)),
             asyncio.create_task(_stopping(closing))]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        outcomes = await asyncio.gather(*pumps, return_exceptions=True)
    ending = next((outcome for outcome in outcomes if isinstance(outcome, _Ending)), None)
    if ending is None:
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                logger.error("websocket relay failed", exc_info=outcome)
        ending = _Ending("gateway", 1011, "gateway error", True, True)
    tally.ending = ending
    if ending.tell_client:
        await client.close(_to_client(ending.code), ending.reason)
    if ending.tell_upstream:
        await upstream.close(_to_upstream(ending.code), ending.reason)


async def _from_client(receive: Receive, upstream: ClientConnection, limit: int, tally: _Tally) -> _Ending:
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            data: str | bytes
            text = message.get("text")
            if text is not None:
                data, size = text, len(text) if text.isascii() else len(text.encode())
            else:
                data = message.get("bytes") or b""
                size = len(data)
            if size > limit:
                return _too_big(limit)
            tally.last = monotonic()
            tally.to_upstream_messages += 1
            tally.to_upstream_bytes += size
            try:
                await upstream.send(data)
            except ConnectionClosed as closed:
                return _upstream_closed(closed)
        elif kind == "websocket.disconnect":
            return _Ending("client", message.get("code") or 1005, message.get("reason") or "", False, True)


async def _from_upstream(upstream: ClientConnection, send: Send, tally: _Tally) -> _Ending:
    while True:
        try:
            data = await upstream.recv()
        except ConnectionClosed as closed:
            return _upstream_closed(closed)
        if isinstance(data, str):
            size = len(data) if data.isascii() else len(data.encode())
            message: Message = {"type": "websocket.send", "text": data}
        else:
            size = len(data)
            message = {"type": "websocket.send", "bytes": data}
        tally.last = monotonic()
        tally.to_client_messages += 1
        tally.to_client_bytes += size
        try:
            await send(message)
        except Exception:  # the client is gone (each server says so with its own exception)
            logger.debug("websocket send to the client failed", exc_info=True)
            return _Ending("client", 1006, "", False, True)


async def _stopping(closing: asyncio.Event) -> _Ending:
    """The gateway stops (or this worker drains): both sides are told 1001, so neither waits out the grace."""
    await closing.wait()
    return _Ending("gateway", 1001, "gateway going away", True, True)


async def _idle(tally: _Tally, seconds: float) -> _Ending:
    while True:
        left = tally.last + seconds - monotonic()
        if left <= 0:
            return _Ending("gateway", 1001, "idle timeout", True, True)
        await asyncio.sleep(left)


def _too_big(limit: int) -> _Ending:
    return _Ending("gateway", 1009, f"message over {limit} bytes", True, True)


def _upstream_closed(closed: ConnectionClosed) -> _Ending:
    sent, rcvd = closed.sent, closed.rcvd
    if sent is not None and (rcvd is None or closed.rcvd_then_sent is False):
        # the upstream's library closed first: a message over max_size (1009) or a ping unanswered (1011)
        return _Ending("gateway", sent.code, sent.reason, True, False)
    if rcvd is not None:
        return _Ending("upstream", rcvd.code, rcvd.reason, True, False)
    return _Ending("upstream", 1006, "", True, False)


def _to_client(code: int) -> int:
    if code == 1005:
        return 1000
    return 1014 if code in _UNSENDABLE else code  # 1014: bad gateway (the upstream connection was lost)


def _to_upstream(code: int) -> int:
    if code == 1005:
        return 1000
    return 1001 if code in _UNSENDABLE else code  # 1001: going away (the client's connection was lost)


def _short(reason: str) -> str:
    """`reason` cut to what a close frame can carry (123 bytes of UTF-8)."""
    return reason.encode()[:123].decode(errors="ignore")
