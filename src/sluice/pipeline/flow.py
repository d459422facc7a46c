"""`Flow`: one exchange on the one request path, from admission to the last byte, whatever edge it came in by.

Every edge (the OpenAI routes, provider passthrough, project calls, the light routes, the FastAPI routes) turns
HTTP into calls on a `Flow`, in this order: `admit_address`, `authenticate`, `admit`, `route` (or the edge's own
target), `call` / `open_stream` / `call_raw`, then `finish`, which releases what admission granted and hands
the finished exchange to the observers. A capability written here is there for every edge.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Sequence
from time import perf_counter, time
from typing import TYPE_CHECKING, TypeVar

import orjson

from sluice.errors import GatewayError, NotFound, UpstreamError
from sluice.exchange import Exchange, Observer, notify, tap_stream
from sluice.ids import random_hex
from sluice.keys.credentials import presented_in
from sluice.pipeline.client_watch import ClientWatch
from sluice.pipeline.failover import Failover
from sluice.pipeline.prompts import apply_prompt
from sluice.providers.base import JSONObject, Operation, UpstreamRequest
from sluice.routing.breaker import CircuitOpen
from sluice.routing.cache import BYPASS
from sluice.telemetry.trace_context import TraceIds

if TYPE_CHECKING:
    from sluice.gateway import Gateway
    from sluice.http.asgi import Receive, Scope
    from sluice.http.body_clock import BodyClock
    from sluice.keys.principal import Principal
    from sluice.limits.admission import Grant
    from sluice.providers.passthrough import PassthroughTarget
    from sluice.providers.upstream import OpenStream
    from sluice.routing.endpoint import Endpoint
    from sluice.routing.table import ModelRoute

Headers = list[tuple[bytes, bytes]]
T = TypeVar("T")
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
PROPAGATED_HEADERS = (b"traceparent", b"tracestate")


def request_id_of(headers: dict[bytes, bytes]) -> bytes:
    """The caller's `X-Request-ID` when it is sane, else a new one."""
    given = headers.get(b"x-request-id")
    if given and _SAFE_REQUEST_ID.fullmatch(given):
        return given
    return random_hex(128).encode()


class Flow:
    """One exchange and what it holds while it runs: its clock, request id, caller, grant and response headers.

    `observers` are who `finish` hands the exchange to: all of the gateway's for an upstream call, fewer for a
    request that makes its calls through child flows (a project route), none for the routes that are not
    exchanges (admin, docs, health)."""

    __slots__ = ("gateway", "started", "headers", "request_id", "exchange", "principal", "grant", "observers",
                 "counted", "upstream_seconds", "parent", "endpoint", "client")

    def __init__(self, gateway: Gateway, headers: dict[bytes, bytes], exchange: Exchange, request_id: bytes, *,
                 observers: Sequence[Observer] = (), counted: bool = True, parent: Flow | None = None) -> None:
        self.gateway = gateway
        self.started = perf_counter()
        self.headers = headers
        self.request_id = request_id
        self.exchange = exchange
        self.principal: Principal | None = None
        self.grant: Grant | None = None
        self.observers = observers
        self.counted = counted
        self.upstream_seconds = 0.0
        """Time spent waiting on upstreams so far (this flow's call, or its children's): not the gateway's own."""
        self.parent = parent
        self.endpoint: Endpoint | None = None
        """The deployment that answered: told at `finish` how the call went (latency, a stream broken midway)."""
        self.client: ClientWatch | None = None
        """Whether the caller left, once its body is read (`watch_client`): the upstream waits are cancelled then."""
        if counted:
            gateway.request_started()

    @classmethod
    def begin(cls, gateway: Gateway, scope: Scope, operation: str | None, *,
              observers: Sequence[Observer] | None = None, counted: bool = True,
              headers: dict[bytes, bytes] | None = None) -> Flow:
        """The flow of a request that arrives at an edge: its request id, its trace ids when tracing is on
        (`headers`: the request's by name, when the edge already made them from the scope)."""
        if headers is None:
            headers = dict(scope["headers"])
        request_id = request_id_of(headers)
        exchange = Exchange(request_id=request_id.decode(), endpoint=scope["path"], method=scope["method"],
                            started_at=time(), operation=operation, request_headers=scope["headers"])
        if gateway.tracing:
            exchange.trace = TraceIds.from_traceparent(headers.get(b"traceparent"))
            exchange.trace_id = exchange.trace.trace_id
        return cls(gateway, headers, exchange, request_id,
                   observers=gateway.observers if observers is None else observers, counted=counted)

    def child(self, operation: Operation, model: str, principal: Principal) -> Flow:
        """A call made on behalf of this request (a project's step) as `principal` (the caller, seen from inside
        the project): same request id and project; its span is a child of this request's server span; it is
        recorded, limited and charged as an upstream call."""
        parent = self.exchange
        exchange = Exchange(request_id=parent.request_id, endpoint=parent.endpoint, method="POST", started_at=time(),
                            operation=operation, key_id=parent.key_id, principal=principal, model=model,
                            project=parent.project)
        exchange.key_hash = parent.key_hash
        if parent.trace is not None:
            exchange.trace = parent.trace.child()
            exchange.trace_id = parent.trace_id
        flow = Flow(self.gateway, {}, exchange, self.request_id, observers=self.gateway.observers, counted=False,
                    parent=self)
        flow.principal = principal
        return flow

    @property
    def body_limit(self) -> int:
        """The most bytes a request body may have (`limits.max_body_bytes`)."""
        return self.gateway.config.limits.max_body_bytes

    @property
    def body_clock(self) -> BodyClock:
        """What times the reading of request bodies (`limits.body_read_timeout_seconds`)."""
        return self.gateway.body_clock

    def watch_client(self, receive: Receive) -> ClientWatch:
        """Watch for the caller leaving from now on (its body has been read): a wait on the upstream is then
        cancelled and the exchange logged as abandoned (`serve`)."""
        client = self.client = ClientWatch(receive)
        return client

    async def watched(self, pending: Awaitable[T]) -> T:
        """`pending` (a wait on an upstream) awaited so that a caller who leaves meanwhile cancels it."""
        client = self.client
        if client is None:
            return await pending
        client.arm()
        try:
            return await pending
        finally:
            client.disarm()

    def abandoned(self) -> None:
        """The caller left before the answer was complete: 499 when no byte of it had been sent."""
        exchange = self.exchange
        exchange.client_disconnected = True
        if not exchange.chunks:
            exchange.status = 499

    async def admit_address(self, scope: Scope) -> None:
        """`limits.per_ip`, charged before the key is known (Throttled, 429, past them)."""
        admission = self.gateway.admission
        if admission.per_ip:
            self.grant = admission.admit_ip_now(scope) or await admission.admit_ip(scope)

    async def authenticate(self, *, jwt_only: bool = False) -> Principal:
        """The caller, from the request's credentials (AuthenticationFailed, 401, without a valid one); only a
        JWT when `jwt_only` (a route with `auth: jwt`)."""
        keys = self.gateway.keys
        presented = presented_in(self.headers)
        principal = await (keys.authenticate_jwt(presented) if jwt_only else keys.authenticate(presented))
        self.identify(principal)
        return principal

    def identify(self, principal: Principal) -> None:
        """Note the caller (authenticated here, or by a FastAPI dependency) on the exchange."""
        self.principal = principal
        exchange = self.exchange
        exchange.key_id, exchange.key_hash = principal.key_id, principal.key_hash
        if self.observers is self.gateway.observers:
            exchange.principal = principal  # charged its usage by the limits and budget observers

    async def admit(self, *, model: str | None = None, body: JSONObject | None = None, size: int = 0,
                    per_key: bool = True) -> None:
        """The caller's budget, rate and concurrency limits and the model's (`per_key=False`: the model's only,
        for a call inside a request the key was already admitted for)."""
        principal = self.principal
        assert principal is not None
        admission = self.gateway.admission
        if not per_key:
            if model in admission.models:
                self.grant = await admission.admit(principal, self.grant, model=model, body=body, size=size,
                                                   exchange=self.exchange, per_key=False)
            return
        if admission.needed(principal, model):
            exchange = self.exchange if body is not None else None
            self.grant = (admission.admit_now(principal, self.grant, model=model, body=body, size=size,
                                              exchange=exchange)
                          or await admission.admit(principal, self.grant, model=model, body=body, size=size,
                                                   exchange=exchange))

    def route(self, operation: Operation, body: JSONObject, raw: bytes | None) -> tuple[UpstreamRequest, ModelRoute]:
        """The call to make for a validated OpenAI-format `body` (`raw`: its bytes, sent as they are when nothing
        needs rewriting) and the model's route: the key's scopes, the prompt template rendered."""
        model = body["model"]
        route = self._route_of(model)
        exchange = self.exchange
        if operation == "chat" and "prompt" in body:
            apply_prompt(self.gateway.prompts, body, exchange)
            raw = None
        exchange.model = model
        forwarded = {"x-request-id": self.request_id.decode()}
        headers = self.headers
        for name in PROPAGATED_HEADERS:
            if name in headers:
                forwarded[name.decode()] = headers[name].decode("latin-1")
        return UpstreamRequest(operation, body, raw, forwarded), route

    def _route_of(self, model: str) -> ModelRoute:
        """`model`'s route, when the caller's key may use it (NotFound, PermissionDenied otherwise)."""
        principal = self.principal
        assert principal is not None
        if not principal.may_use(model):
            raise NotFound(f"The model '{model}' does not exist or you do not have access to it.", param="model",
                           code="model_not_found")
        route = self.gateway.routes.resolve(model)
        if not route.pool.reachable_by(principal.providers):
            principal.check_provider(route.provider)
        return route

    async def recall(self, operation: Operation, raw: bytes) -> bytes | None:
        """The response cache's answer to these exact request bytes when this caller sent them before
        (`ResponseCache.recall`), found before they are parsed: the key's scopes and limits are checked as `route`
        and `admit` check them (the body is parsed only when a limit needs its size in tokens); None when the
        request must go the whole way."""
        cache = self.gateway.cache
        principal = self.principal
        assert cache is not None and principal is not None
        found = await cache.recall(operation, principal.key_id, raw, self.headers.get(b"cache-control"))
        if found is None:
            return None
        model, reply = found
        self._route_of(model)
        exchange = self.exchange
        exchange.model = model
        if self.gateway.admission.needed(principal, model):
            await self.admit(model=model, body=orjson.loads(raw), size=len(raw))
        exchange.response_body = cache.hit(exchange, model, reply)
        exchange.status = 200
        return reply

    async def call(self, request: UpstreamRequest, route: ModelRoute, *, cached: bool = True) -> bytes:
        """The complete reply: the response cache's when the model has one holding it (routing/cache.py) and
        `cached`, else the first deployment's that answers (see `Failover`)."""
        cache = self.gateway.cache
        exchange = self.exchange
        reply: bytes
        if cache is None or not cached:
            exchange.cache = BYPASS
            reply = await self.watched(Failover(self, request, route).run(streamed=False))
        else:
            principal = self.principal
            assert principal is not None
            reply = await self.watched(cache.answer(request, exchange, principal.key_id,
                                                    self.headers.get(b"cache-control"),
                                                    lambda: Failover(self, request, route).run(streamed=False)))
        exchange.response_body = reply
        exchange.status = 200
        return reply

    async def open_stream(self, request: UpstreamRequest, route: ModelRoute) -> AsyncGenerator[bytes, None]:
        """The stream of the first deployment that answers 200 (see `Failover`: nothing is tried elsewhere once
        a stream is open); the exchange keeps its chunks, time to first chunk and a break midway, which the
        deployment's breaker counts as a failure."""
        chunks: AsyncGenerator[bytes, None] = await self.watched(Failover(self, request, route).run(streamed=True))
        exchange = self.exchange
        exchange.stream, exchange.status = True, 200
        return tap_stream(chunks, exchange, self.started, self.gateway.config.request_log.max_body_bytes)

    async def call_raw(self, target: PassthroughTarget, method: str, url: str, headers: list[tuple[str, str]],
                       body: bytes) -> OpenStream:
        """A passthrough request, as the caller sent it, through the provider's breaker (never retried)."""
        exchange = self.exchange
        if exchange.trace is not None:
            headers = [(k, v) for k, v in headers if k.lower() != "traceparent"]
            headers.append(("traceparent", exchange.trace.traceparent_for_upstream()))
        guard = self.gateway.guards[target.name]
        guard.admit()
        upstream_started = self.upstream_started()
        try:
            reply = await self.watched(target.send(method, url, headers, body))
        except BaseException as exc:
            guard.judge(exc)
            raise
        guard.answered(reply.status)
        self.upstream_done(upstream_started)
        exchange.status = reply.status
        return reply

    def relayed(self, chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        """A reply body relayed chunk by chunk, kept on the exchange as it goes."""
        self.exchange.stream = True
        return tap_stream(chunks, self.exchange, self.started, self.gateway.config.request_log.max_body_bytes)

    def response_headers(self, *extra: tuple[bytes, bytes], error: GatewayError | None = None) -> Headers:
        """The headers every response of this request carries: its request id, the limits' state (unless `error`
        brings its own), and the time the gateway itself spent on it so far (upstream time excluded)."""
        overhead = perf_counter() - self.started - self.upstream_seconds
        operation = self.exchange.operation
        if operation is not None and error is None:
            observed = self.gateway.metrics.overhead_by_operation.get(operation)
            if observed is not None:
                observed.observe(overhead)
        headers = [(b"x-request-id", self.request_id), (b"x-sluice-overhead-ms", f"{overhead * 1000:.2f}".encode()),
                   *extra]
        endpoint = self.endpoint
        if endpoint is not None:
            headers += endpoint.headers
        elif self.exchange.provider is not None:
            headers.append((b"x-sluice-provider", self.exchange.provider.encode()))
        # An error with headers of its own (a limit's 429, a breaker's 503) replaces the limits' state; an
        # upstream's passed-on `Retry-After` is not about the caller's limits, which are still shown.
        if self.grant is not None and (error is None or not error.headers or isinstance(error, UpstreamError)):
            headers += self.grant.headers()
        return headers

    def failed_over(self, model: str, endpoint: Endpoint, reason: str) -> None:
        """A deployment failed for `reason`; the call goes to the next one."""
        self.gateway.metrics.failovers.labels(model, endpoint.id, reason).inc()
        self._hop({"deployment": endpoint.id, "error": reason})

    def fell_back(self, model: str, fallback: str, reason: str) -> None:
        """Every deployment of `model` failed (the last for `reason`); the call goes to `fallback`."""
        self.gateway.metrics.fallbacks.labels(model, fallback, reason).inc()
        self._hop({"from": model, "fallback": fallback, "reason": reason})

    def _hop(self, hop: dict[str, str]) -> None:
        exchange = self.exchange
        if exchange.hops is None:
            exchange.hops = [hop]
        else:
            exchange.hops.append(hop)

    def failed(self, error: GatewayError) -> None:
        """Note the error the request is answered with."""
        exchange = self.exchange
        exchange.status, exchange.error = error.status, error.message
        exchange.error_type, exchange.error_code = error.type, error.code
        if isinstance(error, CircuitOpen):
            exchange.upstream_offset = None  # refused by the breaker: no upstream call, so no upstream span

    def finish(self) -> None:
        """Release what admission granted and hand the finished exchange to the observers (once)."""
        if self.grant is not None:
            self.grant.release()
        if self.client is not None:
            self.client.close()
        exchange = self.exchange
        exchange.latency_total = perf_counter() - self.started
        endpoint = self.endpoint
        if endpoint is not None:
            self.endpoint = None
            if exchange.stream and exchange.error is not None:
                endpoint.guard.broke()  # the upstream broke the stream after its 200: a failure, never retried
            endpoint.finished(exchange.latency_upstream, exchange.error)
        if self.counted:
            self.counted = False
            self.gateway.request_finished()
        if self.observers:
            notify(self.observers, exchange)
            self.observers = ()

    def trace_upstream(self, request: UpstreamRequest) -> None:
        trace = self.exchange.trace
        if trace is not None:
            request.headers["traceparent"] = trace.traceparent_for_upstream()

    def upstream_started(self) -> float:
        now = perf_counter()
        self.exchange.upstream_offset = now - self.started
        return now

    def upstream_done(self, upstream_started: float) -> None:
        waited = self.exchange.latency_upstream = perf_counter() - upstream_started
        self.upstream_seconds += waited
        if self.parent is not None:
            self.parent.upstream_seconds += waited
