"""The tries of one service call: an instance from the service's pool, then (for a retryable request) another
instance after a connection failure, a timeout or a 502/503/504, as long as no byte of the reply was relayed.
`on_an_instance` is the loop itself, for any kind of call (an HTTP request here, a WebSocket handshake in
http/websocket.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from sluice.errors import GatewayError, ServiceUnavailable, UpstreamError
from sluice.routing.fallback import failover_reason

if TYPE_CHECKING:
    from sluice.pipeline.flow import Flow
    from sluice.providers.upstream import OpenStream
    from sluice.routing.endpoint import Endpoint
    from sluice.services.registry import Service

RETRIED_STATUSES = frozenset({502, 503, 504})
Reply = TypeVar("Reply")


def call_service(flow: Flow, service: Service, method: str, path: str, headers: list[tuple[str, str]],
                 body: bytes | AsyncIterator[bytes], *, retryable: bool, read_seconds: float | None
                 ) -> Awaitable[OpenStream]:
    """The reply of the first instance that answers (a 5xx it answered on the last try included). Not a coroutine
    of its own: each resumption of the call would pass through one more frame."""

    def send(endpoint: Endpoint) -> Awaitable[OpenStream]:
        return service.send(method, endpoint.target + path, headers, body, read_seconds)

    # A body still being relayed upstream reads the client's messages itself: then there is no watch.
    return flow.watched(on_an_instance(flow, service, send, _status, _close, retryable=retryable))


async def on_an_instance(flow: Flow, service: Service, call: Callable[[Endpoint], Awaitable[Reply]],
                         status: Callable[[Reply], int], discard: Callable[[Reply], Awaitable[None]], *,
                         retryable: bool) -> Reply:
    """`call`'s reply from the first instance that answers: instances picked from the service's pool (by its
    strategy and the caller's affinity), each through its breaker; a GatewayError `call` raises that another
    instance may not answer the same way, or a reply whose `status` is 502/503/504 (then `discard`ed), moves
    a `retryable` call to the next one. The instance is `flow.endpoint`, told at `flow.finish` how it went."""
    attempts = 1 + (service.config.retries.attempts if retryable else 0)
    affinity = service.affinity(flow.headers)
    tried: list[Endpoint] = []
    last: GatewayError | None = None
    while len(tried) < attempts:
        endpoint = service.pool.pick(tried, None, affinity)
        if endpoint is None:
            break
        tried.append(endpoint)
        guard = endpoint.guard
        try:
            guard.admit()
        except GatewayError as refused:
            last = refused
            flow.failed_over(service.name, endpoint, "breaker_open")
            continue
        endpoint.started()
        flow.exchange.upstream_model = endpoint.target
        started = flow.upstream_started()
        try:
            reply = await call(endpoint)
        except GatewayError as exc:
            guard.judge(exc)
            endpoint.finished(None, exc.message)
            reason = failover_reason(exc)
            if reason is None:
                raise
            last = exc
            flow.failed_over(service.name, endpoint, reason)
            continue
        except BaseException as exc:
            guard.judge(exc)
            endpoint.finished(None)
            raise
        code = status(reply)
        guard.answered(code)
        if code in RETRIED_STATUSES and len(tried) < attempts and service.pool.pick(tried, None) is not None:
            await discard(reply)
            endpoint.finished(None, f"HTTP {code}")
            last = UpstreamError(f"Service {service.name!r} answered {code}.", status=code)
            flow.failed_over(service.name, endpoint, f"http_{code}")
            continue
        flow.upstream_done(started)
        flow.endpoint = endpoint
        flow.exchange.status = code
        return reply
    if last is not None:
        raise last
    error = ServiceUnavailable(f"No instance of service {service.name!r} can take requests right now (failing "
                               "health checks, draining, or its circuit breakers are open).",
                               code="no_available_instance")
    error.headers = {"Retry-After": str(max(1, round(service.pool.retry_in())))}
    raise error


def _status(reply: OpenStream) -> int:
    return reply.status


async def _close(reply: OpenStream) -> None:
    await reply.close()
