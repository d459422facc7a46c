"""create_app(config, settings): the ASGI application — hot routes first, FastAPI for everything else."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from sluice.config import SluiceConfig, load_config
from sluice.errors import GatewayError
from sluice.gateway import Gateway
from sluice.http.asgi import JSON_TYPE, ASGIApp, Receive, Scope, Send, send_bytes, send_error
from sluice.http.console import Console, is_console_path
from sluice.http.cors import cors_edge
from sluice.http.light import light_route_for, light_routes
from sluice.http.messages import messages_routes
from sluice.http.openai import hot_routes
from sluice.http.passthrough import PREFIX, passthrough_route
from sluice.http.responses import responses_routes
from sluice.http.unsupported import unknown_route
from sluice.pipeline.flow import Flow
from sluice.pipeline.wrapped import serve_wrapped, stamped
from sluice.projects import any_to_mount
from sluice.serve.sched_slice import shorten_slices
from sluice.settings import Settings
from sluice.telemetry.logs import configure_logging

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import FastAPI

    from sluice.mcp.edge import McpEdge
    from sluice.services.rules import Rule

    ServiceHandler = Callable[[Gateway, Rule, Scope, Receive, Send, dict[bytes, bytes] | None], Awaitable[None]]

logger = logging.getLogger("sluice")

API_PREFIXES = ("/docs", "/redoc", "/openapi.json", "/demo/", "/projects/", "/admin/")
"""Every path the FastAPI application (`http/api.py`) serves starts with one of these; others are unknown routes."""


class SluiceApp:
    """Dispatches the hot routes (OpenAI, `/provider/…`) and the light ones (/health, /metrics, /v1/models) to raw
    ASGI handlers and the rest to FastAPI; owns the lifespan.

    FastAPI (~12 MB per worker with its routes) is built on the first request that needs it, unless a project
    plugin is mounted: then at once, so a broken plugin stops the start-up."""

    def __init__(self, gateway: Gateway, api: FastAPI | None = None) -> None:
        self.gateway = gateway
        self._api = api
        self.hot: dict[str, ASGIApp] = hot_routes(gateway) | messages_routes(gateway) | responses_routes(gateway)
        self.light: dict[str, ASGIApp] = light_routes(gateway)
        self.passthrough = passthrough_route(gateway)
        self._mcp: McpEdge | None = None
        self.console = Console()
        """The admin console's static files at `/ui` (http/console.py): served here, without FastAPI."""
        config = gateway.config
        self.cors = cors_edge(config.cors, config.routes, gateway.services.rules if gateway.services else None)
        """None unless `cors:` is set globally or on a route: then the request path pays this one check."""
        self._service_route: ServiceHandler | None = None
        """http/services.py's `handle`, imported once when the config has service routes."""
        if gateway.services is not None:
            from sluice.http.services import handle

            self._service_route = handle

    @property
    def api(self) -> FastAPI:
        if self._api is None:
            from sluice.http.api import create_api

            self._api = create_api(self.gateway)
        return self._api

    @property
    def mcp(self) -> McpEdge:
        """The `/mcp` edge (sluice/mcp/edge.py), built on the first MCP request: a worker that serves none never
        imports the MCP SDK."""
        if self._mcp is None:
            from sluice.mcp.edge import McpEdge

            self._mcp = McpEdge(self.gateway, api=lambda: self.api)  # project tools go through the same FastAPI app
        return self._mcp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.cors is not None:  # http/cors.py: preflights answered here, before auth; headers on the rest
                answered, send = await self.cors.enter(scope, send)
                if answered:
                    return
            path = scope["path"]
            handler = self.hot.get(path)
            if handler is not None:
                if scope["method"] == "POST":
                    await handler(scope, receive, send)
                else:
                    await _method_not_allowed(scope, stamped(self._plain_flow(scope), send))
                return
            if path.startswith(PREFIX):
                await self.passthrough(scope, receive, send)
                return
            if path == "/mcp" or path.startswith("/mcp/"):  # MCP over Streamable HTTP, own and upstream tools
                await self.mcp(scope, receive, send)
                return
            handler = light_route_for(self.light, path)
            if handler is not None:
                await handler(scope, receive, send)
                return
            if is_console_path(path):  # /ui: the admin console's files, ahead of any service route for /ui/**
                await self.console(scope, receive, stamped(self._plain_flow(scope), send))
                return
            if not path.startswith(API_PREFIXES):
                await self._service_or_unknown(scope, receive, send)
                return
            project_route = path.startswith("/projects/")  # counted in flight, so a graceful stop waits for it
            flow = Flow.begin(self.gateway, scope, None, observers=(), counted=project_route)
            await serve_wrapped(flow, self.api, scope, receive, send)
            return
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        elif scope["type"] == "websocket" and not scope["path"].startswith(API_PREFIXES):
            await self._websocket(scope, receive, send)
            return
        await self.api(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket handshake outside FastAPI's paths: proxied by a `websocket: true` service route (matched as
        a GET, http/websocket.py), else refused with 404."""
        from sluice.http import websocket

        services = self.gateway.services
        if services is not None:
            rule = services.rules.match("GET", scope["path"], dict(scope["headers"]), _query_of(scope))
            if rule is not None and rule.config.websocket:
                await websocket.handle(self.gateway, rule, scope, receive, send, self.cors)
                return
        await websocket.refuse_unrouted(self.gateway, scope, receive, send)

    async def _service_or_unknown(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A path the gateway does not serve itself: a service route's, `GET /`'s service info, or a 404."""
        services = self.gateway.services
        if services is not None:
            headers = dict(scope["headers"])
            rule = services.rules.match(scope["method"], scope["path"], headers, _query_of(scope))
            if rule is not None and self._service_route is not None:
                await self._service_route(self.gateway, rule, scope, receive, send, headers)
                return
        if scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            from sluice.http.services import service_info

            body = service_info(self.gateway)
            await send_bytes(stamped(self._plain_flow(scope), send), 200, body,
                             [JSON_TYPE, (b"content-length", str(len(body)).encode())])
            return
        await unknown_route(scope, stamped(self._plain_flow(scope), send), self.gateway.config.providers)

    def drain(self) -> None:
        """This worker stops (SIGTERM, or replaced at a reload): end its WebSockets (1001) so they reconnect to a
        new one, and its streams still open when `server.shutdown_grace_seconds` ends with an error event."""
        self.gateway.closing.set()
        self.gateway.streams.after(self.gateway.config.server.shutdown_grace_seconds)

    def _plain_flow(self, scope: Scope) -> Flow:
        """The flow of a request answered before any route takes it (no exchange to observe)."""
        return Flow.begin(self.gateway, scope, None, observers=(), counted=False)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    logger.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                tune_garbage_collector()
                if self.gateway.settings.sched_slice_us:
                    shorten_slices(self.gateway.settings.sched_slice_us)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._mcp is not None:
                    await self._mcp.aclose()  # the MCP SDK's session managers, before the gateway they call
                await self.gateway.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _query_of(scope: Scope) -> dict[str, str]:
    query: bytes = scope.get("query_string", b"")
    return dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}


def tune_garbage_collector() -> None:
    """Once start-up is done: move everything built so far out of the collector's sight, and collect the young
    generation every 20,000 net allocations instead of 700. Measured on a worker under chat load (8 connections,
    gc.callbacks timing): with the defaults, 17,000 requests ran 126 young collections (mean 0.3 ms), 12 middle
    ones (1.7 ms) and a full one that walked the ~120,000 start-up objects for 78 ms, a pause every in-flight
    request waits out; tuned, 13,000 requests ran none. Throughput (bench pairs, both loaded at once): +3-5 %."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


async def _method_not_allowed(scope: Scope, send: Send) -> None:
    error = GatewayError(f"Method {scope['method']} is not allowed on {scope['path']}; use POST.", status=405,
                         type="invalid_request_error", code="method_not_allowed")
    await send_error(send, error, [(b"allow", b"POST")])


def create_app(config: SluiceConfig, settings: Settings) -> SluiceApp:
    """The whole application for one config; nothing is shared between two apps."""
    gateway = Gateway(config, settings)
    if not any_to_mount(config):
        return SluiceApp(gateway)
    from sluice.http.api import create_api

    return SluiceApp(gateway, create_api(gateway))


def app_from_env() -> SluiceApp:
    """The factory server workers call: settings from the environment, config from SLUICE_CONFIG."""
    settings = Settings()
    configure_logging(settings.log_format)
    return create_app(load_config(settings.config), settings)


__all__ = ["JSON_TYPE", "SluiceApp", "app_from_env", "create_app"]
