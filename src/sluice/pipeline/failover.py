"""`Failover`: one routed call, sent to the model's deployments in the pool's order, then to its fallback models,
until one answers; only failures another upstream might not repeat move it on (routing/fallback.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluice.errors import GatewayError, ServiceUnavailable
from sluice.limits.tokens import estimate_tokens
from sluice.routing.fallback import CONTEXT_WINDOW, failover_reason

if TYPE_CHECKING:
    from sluice.pipeline.flow import Flow
    from sluice.providers.base import UpstreamRequest
    from sluice.routing.endpoint import Endpoint
    from sluice.routing.table import ModelRoute


class Failover:
    """The tries of one call. A stream counts as answered once its upstream sent 200: nothing is tried elsewhere
    after that, so no byte of a second answer ever follows a first one."""

    __slots__ = ("flow", "request", "route", "raw", "asked", "fallbacks", "context_fallback")

    def __init__(self, flow: Flow, request: UpstreamRequest, route: ModelRoute) -> None:
        self.flow = flow
        self.request = request
        self.route = route
        self.raw = request.raw
        """The caller's bytes: sent as they are to a deployment whose upstream model is the name asked for."""
        self.asked = request.body.get("model")
        self.fallbacks = list(route.fallbacks)
        self.context_fallback = route.context_window_fallback

    async def run(self, *, streamed: bool) -> Any:
        """The first answer (the reply's bytes, or the open stream); the last upstream error when every try
        failed, or a 503 when nothing could be tried at all."""
        principal = self.flow.principal
        providers = principal.providers if principal is not None else None
        route = self.route
        tried: list[Endpoint] = []
        last: GatewayError | None = None
        reason: str | None = None
        while True:
            endpoint, others = route.pool.choose(tried, providers)
            if endpoint is None:
                if last is None:
                    last = _refusal(route)
                    reason = "breaker_open"
                target = self._next_model(reason)
                if target is None:
                    raise last
                self.flow.fell_back(route.name, target, reason or "unavailable")
                route, tried = self.flow.gateway.routes.resolve(target), []
                continue
            tried.append(endpoint)
            try:
                return await self._try(endpoint, streamed, alone=not (others or self.fallbacks))
            except GatewayError as exc:
                reason = failover_reason(exc)
                if reason is None:
                    raise
                last = exc
                self.flow.failed_over(route.name, endpoint, reason)
                if reason == CONTEXT_WINDOW:
                    tried = list(route.pool.endpoints)  # the model's other deployments have the same window

    def _next_model(self, reason: str | None) -> str | None:
        if reason == CONTEXT_WINDOW:
            target, self.context_fallback = self.context_fallback, None
            return target
        return self.fallbacks.pop(0) if self.fallbacks else None

    async def _try(self, endpoint: Endpoint, streamed: bool, alone: bool) -> Any:
        """One deployment's answer; its own retries (with backoff) only when the call has nowhere else to go."""
        flow, request = self.flow, self.request
        model = endpoint.target
        request.body["model"] = model
        request.raw = self.raw if model == self.asked else None
        exchange = flow.exchange
        exchange.provider, exchange.upstream_model = endpoint.owner, model
        flow.trace_upstream(request)
        limits = endpoint.limits
        endpoint.started(estimate_tokens(request.body, len(self.raw or b""))
                         if limits is not None and limits.tokens_per_minute is not None else 0)
        started = flow.upstream_started()
        guard = endpoint.guard
        try:
            result = await (guard.stream(request, retry=alone) if streamed else guard.send(request, retry=alone))
        except GatewayError as exc:
            endpoint.finished(None, exc.message)
            raise
        except BaseException:
            endpoint.finished(None)
            raise
        flow.upstream_done(started)
        flow.endpoint = endpoint
        return result


def _refusal(route: ModelRoute) -> GatewayError:
    """Why nothing of `route` could be tried: the refusal of a breaker that is open, else a 503 of our own."""
    for endpoint in route.pool.endpoints:
        try:
            endpoint.guard.admit()
        except GatewayError as refused:
            return refused
        breaker = endpoint.guard.breaker
        if breaker is not None:
            breaker.released()  # that check took a half-open probe slot: give it back
    wait = route.pool.retry_in()
    error = ServiceUnavailable(f"No deployment of model {route.name!r} can take requests right now (failing "
                               "health checks or over their own limits), and no fallback could answer.",
                               code="no_available_deployment")
    error.headers = {"Retry-After": str(max(1, round(wait)))}
    return error
