"""The light GET routes (/health, /metrics, /v1/models) as raw ASGI handlers: what probes, scrapers and SDKs call,
served without building FastAPI (docs/benchmarks.md, "Memory").

Each route checks what its FastAPI version checked, in the same order: the client address's limits, then, for
the models routes, the caller's key and its limits; errors leave OpenAI-shaped, with the limits' headers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from prometheus_client import CONTENT_TYPE_LATEST

from sluice.errors import GatewayError, internal_error
from sluice.gateway import Gateway
from sluice.http.asgi import JSON_TYPE, ASGIApp, Receive, Scope, Send, request_headers, send_error
from sluice.http.health import health
from sluice.http.metrics import metrics
from sluice.http.models import MODEL_PREFIX, get_model, list_models
from sluice.http.openai import authenticate
from sluice.keys.principal import Principal
from sluice.limits.admission import Grant

logger = logging.getLogger("sluice.http")

Answer = Callable[[Gateway, Scope, dict[bytes, bytes], Principal | None], Awaitable[bytes]]
"""A route's body for an admitted request (`principal` is the caller on keyed routes, else None)."""
ALLOWED = (b"allow", b"GET, HEAD")


@dataclass(frozen=True, slots=True)
class LightRoute:
    """One light route: its answer, its content type, and what is checked before it answers."""

    answer: Answer
    content_type: tuple[bytes, bytes] = JSON_TYPE
    address_limited: bool = True
    keyed: bool = False


ROUTES: dict[str, LightRoute] = {
    "/health": LightRoute(health, address_limited=False),
    "/metrics": LightRoute(metrics, (b"content-type", CONTENT_TYPE_LATEST.encode())),
    "/v1/models": LightRoute(list_models, keyed=True),
    MODEL_PREFIX: LightRoute(get_model, keyed=True),
}


def light_routes(gateway: Gateway) -> dict[str, ASGIApp]:
    """The raw ASGI handler for each light route, by path (`/v1/models/` stands for every `/v1/models/{id}`)."""
    return {path: partial(serve, gateway, route) for path, route in ROUTES.items()}


def light_route_for(routes: dict[str, ASGIApp], path: str) -> ASGIApp | None:
    """The light route that serves `path`, if one does."""
    handler = routes.get(path)
    if handler is None and path.startswith(MODEL_PREFIX):
        return routes[MODEL_PREFIX]
    return handler


async def serve(gateway: Gateway, route: LightRoute, scope: Scope, receive: Receive, send: Send) -> None:
    """One GET or HEAD request to `route`."""
    method = scope["method"]
    if method not in ("GET", "HEAD"):
        error = GatewayError(f"Method {method} is not allowed on {scope['path']}; use GET.", status=405,
                             type="invalid_request_error", code="method_not_allowed")
        await send_error(send, error, [ALLOWED])
        return
    headers = request_headers(scope)
    admission = gateway.admission
    grant: Grant | None = None
    response_headers: list[tuple[bytes, bytes]] = []
    try:
        if route.address_limited and admission.per_ip:
            grant = await admission.admit_ip(scope)
        principal = None
        if route.keyed:
            principal = await authenticate(gateway, headers)
            if admission.needed(principal):
                grant = await admission.admit(principal, grant)
        if grant is not None:
            response_headers += grant.headers()
        body = await route.answer(gateway, scope, headers, principal)
        await send({"type": "http.response.start", "status": 200, "headers": [
            route.content_type, (b"content-length", str(len(body)).encode()), *response_headers]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
    except GatewayError as exc:
        await send_error(send, exc, response_headers)
    except Exception:
        logger.exception("unhandled error on %s", scope["path"])
        await send_error(send, internal_error(), response_headers)
    finally:
        if grant is not None:
            grant.release()
