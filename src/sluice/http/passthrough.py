"""`/provider/{name}/{path}`: any method, query and body forwarded to one provider, as a raw ASGI handler.

Like the OpenAI hot routes this skips FastAPI: it is on the benchmark's hot path. Errors raised before the
upstream answers become OpenAI-shaped responses; once the upstream's status is sent, a broken upstream aborts
the response (the client sees a truncated body, as from any proxy) instead of appending bytes of our own.
"""

from __future__ import annotations

import logging
from functools import partial
from time import perf_counter, time
from urllib.parse import quote

from sluice.errors import GatewayError, InvalidRequest, NotFound, internal_error
from sluice.exchange import Exchange, notify, tap_stream
from sluice.gateway import Gateway
from sluice.http.asgi import ASGIApp, ClientDisconnected, Receive, Scope, Send, read_body, send_error
from sluice.http.openai import authenticate, relay, request_id_of
from sluice.limits.admission import Grant
from sluice.providers.passthrough import Forwarded, PassthroughTarget, reply_headers
from sluice.providers.upstream import OpenStream
from sluice.routing.breaker import CircuitOpen
from sluice.telemetry.trace_context import TraceIds

logger = logging.getLogger("sluice.http")

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
    started = perf_counter()
    headers = dict(scope["headers"])
    request_id = request_id_of(headers)
    exchange = Exchange(request_id=request_id.decode(), endpoint=scope["path"], method=scope["method"],
                        started_at=time(), operation="passthrough", request_headers=scope["headers"])
    if gateway.tracing:
        exchange.trace = TraceIds.from_traceparent(headers.get(b"traceparent"))
        exchange.trace_id = exchange.trace.trace_id
    admission = gateway.admission
    grant: Grant | None = None
    gateway.request_started()
    try:
        try:
            if admission.per_ip:
                grant = await admission.admit_ip(scope)
            principal = await authenticate(gateway, headers)
            exchange.key_id, exchange.principal = principal.key_id, principal
            name, suffix = split_target(scope)
            target = find_target(gateway, name)
            exchange.provider = name
            principal.check_provider(name)
            if admission.needed(principal):
                grant = await admission.admit(principal, grant)
            url = target.url(suffix, scope["query_string"])
            body = exchange.request_body = await read_body(receive, headers, gateway.config.limits.max_body_bytes)
            upstream_started = perf_counter()
            exchange.upstream_offset = upstream_started - started
            forwarded = forwarded_of(scope, headers, request_id)
            upstream_headers = target.headers(scope["headers"], forwarded)
            if exchange.trace is not None:
                upstream_headers = [(k, v) for k, v in upstream_headers if k.lower() != "traceparent"]
                upstream_headers.append(("traceparent", exchange.trace.traceparent_for_upstream()))
            guard = gateway.guards[name]  # the provider's circuit breaker; no retries of raw requests
            guard.admit()
            try:
                reply = await target.send(scope["method"], url, upstream_headers, body)
            except BaseException as exc:
                guard.judge(exc)
                raise
            guard.answered(reply.status)
            waited = exchange.latency_upstream = perf_counter() - upstream_started
        except GatewayError as exc:
            exchange.status, exchange.error = exc.status, exc.message
            exchange.error_type, exchange.error_code = exc.type, exc.code
            if isinstance(exc, CircuitOpen):
                exchange.upstream_offset = None  # refused by the breaker: no upstream call, so no upstream span
            await send_error(send, exc, [(b"x-request-id", request_id)])
            return
        except ClientDisconnected:
            exchange.client_disconnected = True
            return
        except Exception:
            logger.exception("unhandled error on %s", scope["path"])
            error = internal_error()
            exchange.status, exchange.error = error.status, error.message
            await send_error(send, error, [(b"x-request-id", request_id)])
            return
        exchange.status = reply.status
        overhead = perf_counter() - started - waited
        await respond(gateway, target, reply, scope, receive, send, request_id, overhead, exchange, started,
                      grant.headers() if grant is not None else [])
    finally:
        if grant is not None:
            grant.release()
        exchange.latency_total = perf_counter() - started
        gateway.request_finished()
        notify(gateway.observers, exchange)


async def respond(gateway: Gateway, target: PassthroughTarget, reply: OpenStream, scope: Scope,
                  receive: Receive, send: Send, request_id: bytes, overhead: float, exchange: Exchange,
                  started: float, limits: list[tuple[bytes, bytes]]) -> None:
    """The upstream's status, headers and body, unchanged but for hop-by-hop headers (and Sluice's rate-limit
    headers, `limits`)."""
    gateway.metrics.overhead_by_operation["passthrough"].observe(overhead)
    headers = reply_headers(reply)
    if not any(name == b"x-request-id" for name, _ in headers):
        headers.append((b"x-request-id", request_id))
    headers.append((b"x-sluice-overhead-ms", f"{overhead * 1000:.2f}".encode()))
    headers += limits
    if _whole(scope, reply):
        try:
            body = exchange.response_body = await target.read(reply)
        except GatewayError as exc:
            exchange.status, exchange.error = exc.status, exc.message
            await send_error(send, exc, [(b"x-request-id", request_id)])
            return
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    exchange.stream = True
    await relay(tap_stream(target.chunks(reply), exchange, started), receive, send,
                ending=None)


def _whole(scope: Scope, reply: OpenStream) -> bool:
    """Whether to read the reply whole: no body, or a known length small enough to hold."""
    if scope["method"] == "HEAD" or reply.status in _NO_BODY_STATUSES:
        return True
    length = reply.response.get_header("content-length")
    return length is not None and length.isdigit() and int(length) <= WHOLE_BODY_LIMIT
