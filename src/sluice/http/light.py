"""The light GET routes (/health, /metrics, /v1/models, /v1/responses/{id}) as raw ASGI handlers: what probes,
scrapers and SDKs call, served without building FastAPI (docs/benchmarks.md, "Memory").

Each route checks what its FastAPI version checked, in the same order: the client address's limits, then, for
the models routes, the caller's key and its limits; errors leave OpenAI-shaped, with the limits' headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from prometheus_client import CONTENT_TYPE_LATEST

from sluice.errors import GatewayError
from sluice.gateway import Gateway
from sluice.http.asgi import JSON_TYPE, ASGIApp, Receive, Scope, Send
from sluice.http.health import health, ready
from sluice.http.metrics import metrics
from sluice.http.models import MODEL_PREFIX, get_model, list_models
from sluice.http.responses import RESPONSE_PREFIX, get_response
from sluice.keys.principal import Principal
from sluice.pipeline.answer import serve as serve_flow
from sluice.pipeline.flow import Flow

Answer = Callable[[Gateway, Scope, dict[bytes, bytes], Principal | None], Awaitable[bytes]]
"""A route's body for an admitted request (`principal` is the caller on keyed routes, else None)."""
ALLOWED_HEADER = {"Allow": "GET, HEAD"}


@dataclass(frozen=True, slots=True)
class LightRoute:
    """One light route: its answer, its content type, and what is checked before it answers."""

    answer: Answer
    content_type: tuple[bytes, bytes] = JSON_TYPE
    address_limited: bool = True
    keyed: bool = False


ROUTES: dict[str, LightRoute] = {
    "/health": LightRoute(health, address_limited=False),
    "/health/ready": LightRoute(ready, address_limited=False),
    "/metrics": LightRoute(metrics, (b"content-type", CONTENT_TYPE_LATEST.encode())),
    "/v1/models": LightRoute(list_models, keyed=True),
    MODEL_PREFIX: LightRoute(get_model, keyed=True),
    RESPONSE_PREFIX: LightRoute(get_response, keyed=True),
}


def light_routes(gateway: Gateway) -> dict[str, ASGIApp]:
    """The raw ASGI handler for each light route, by path (`/v1/models/` stands for every `/v1/models/{id}`)."""
    routes: dict[str, ASGIApp] = {path: partial(serve, gateway, route) for path, route in ROUTES.items()}
    if gateway.services is not None:  # the services' aggregated health (http/services_health.py)
        from sluice.http.services_health import services_health

        aggregated = partial(serve, gateway, LightRoute(services_health))
        routes["/health/services"] = aggregated
        if gateway.config.services_health_path:
            routes[gateway.config.services_health_path] = aggregated
    return routes


def light_route_for(routes: dict[str, ASGIApp], path: str) -> ASGIApp | None:
    """The light route that serves `path`, if one does."""
    handler = routes.get(path)
    if handler is None and path.startswith(MODEL_PREFIX):
        return routes[MODEL_PREFIX]
    if handler is None and path.startswith(RESPONSE_PREFIX) and "/" not in path[len(RESPONSE_PREFIX):]:
        return routes[RESPONSE_PREFIX]
    return handler


async def serve(gateway: Gateway, route: LightRoute, scope: Scope, receive: Receive, send: Send) -> None:
    """One GET or HEAD request to `route` (a flow that is not an exchange: nothing is observed or counted)."""
    flow = Flow.begin(gateway, scope, None, observers=(), counted=False)
    await serve_flow(flow, send, partial(_answer, flow, route, scope, send))


async def _answer(flow: Flow, route: LightRoute, scope: Scope, send: Send) -> None:
    method = scope["method"]
    if method not in ("GET", "HEAD"):
        error = GatewayError(f"Method {method} is not allowed on {scope['path']}; use GET.", status=405,
                             type="invalid_request_error", code="method_not_allowed")
        error.headers = ALLOWED_HEADER
        raise error
    if route.address_limited:
        await flow.admit_address(scope)
    principal = None
    if route.keyed:
        principal = await flow.authenticate()
        await flow.admit()
    body = await route.answer(flow.gateway, scope, flow.headers, principal)
    await send({"type": "http.response.start", "status": 200, "headers": [
        route.content_type, (b"content-length", str(len(body)).encode()), *flow.response_headers()]})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
