"""The `/mcp` and `/mcp/{server}` edge: a Flow (address limits, key, key limits) before the SDK's transport."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from importlib.metadata import PackageNotFoundError, version

import orjson
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from sluice.errors import GatewayError, NotFound
from sluice.gateway import Gateway
from sluice.http.asgi import ASGIApp, Message, Receive, Scope, Send, read_body, send_error
from sluice.mcp import caller as callers
from sluice.mcp.caller import Caller
from sluice.mcp.catalog import Catalog
from sluice.mcp.permissions import ToolPolicy
from sluice.mcp.project_tools import ProjectTools
from sluice.mcp.running import Running
from sluice.mcp.server import INSTRUCTIONS, build_server
from sluice.mcp.upstream import Upstream
from sluice.pipeline.answer import serve
from sluice.pipeline.flow import Flow, Headers

PATH = "/mcp"
WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="sluice"')


class McpEdge:
    """Serves MCP over Streamable HTTP, stateless: every POST is a complete exchange, no session is held in a
    worker, so any worker of any instance may answer any request (docs/mcp.md). One SDK session manager per view:
    `/mcp` (the gateway's own tools and every upstream's, prefixed) and `/mcp/{server}` (one upstream's)."""

    def __init__(self, gateway: Gateway, api: Callable[[], ASGIApp] | None = None) -> None:
        """`api` gives the gateway's FastAPI app, which project tools are called through; without it the edge
        builds one of its own for this gateway on the first project tool call (the same routes and checks)."""
        self.gateway = gateway
        self._api = api
        self._own_api: ASGIApp | None = None
        upstreams = {name: Upstream(name, config) for name, config in gateway.config.mcp_servers.items()}
        self.catalog = Catalog(upstreams, ProjectTools(gateway, self._fastapi))
        self._views: dict[str | None, Running] = {}

    def _fastapi(self) -> ASGIApp:
        if self._api is not None:
            return self._api()
        if self._own_api is None:
            from sluice.http.api import create_api

            self._own_api = create_api(self.gateway)
        return self._own_api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        flow = Flow.begin(self.gateway, scope, None, observers=self.gateway.request_observers)
        await serve(flow, send, partial(self._answer, flow, scope, receive, send), render=_render)

    async def _answer(self, flow: Flow, scope: Scope, receive: Receive, send: Send) -> None:
        await flow.admit_address(scope)
        principal = await flow.authenticate()
        await flow.admit()
        server = self._server_of(scope["path"])
        if scope["method"] == "GET":
            raise _no_stream()
        caller = Caller(flow, principal, ToolPolicy(principal.mcp), server, scope=scope)
        if scope["method"] == "POST":
            body = await read_body(receive, flow.headers, flow.body_limit, flow.body_clock)
            if _is_initialize(body):
                caller.instructions = await self._instructions(caller)
            receive = _replayed(body, receive)
        manager = await self._view(server).started()
        token = callers.enter(caller)
        try:
            await manager.handle_request(scope, receive, _stamped(flow, send))
        finally:
            callers.leave(token)

    def _server_of(self, path: str) -> str | None:
        """None for `/mcp`, else the upstream `/mcp/{server}` names (NotFound for one not configured)."""
        name = path[len(PATH):].strip("/")
        if not name:
            return None
        if name not in self.catalog.upstreams:
            known = ", ".join(sorted(self.catalog.upstreams)) or "none"
            raise NotFound(f"No MCP server {name!r} is configured (mcp_servers: {known}).", code="unknown_mcp_server")
        return name

    async def _instructions(self, caller: Caller) -> str:
        """What `initialize` tells this key: the count of tools it may use here, or that it may use none."""
        listing = await self.catalog.listing(caller)
        if not listing.tools:
            return self.catalog.why_empty(caller)
        notices = "".join(f" {notice}" for notice in listing.notices)
        return f"{INSTRUCTIONS} This API key may use {len(listing.tools)} tool(s) here.{notices}"

    def _view(self, server: str | None) -> Running:
        running = self._views.get(server)
        if running is None:
            name = "sluice" if server is None else f"sluice/{server}"
            manager = StreamableHTTPSessionManager(
                app=build_server(self.catalog, name, _sluice_version(), resources=server is None), stateless=True,
                # Callers authenticate with a key in a header, never a cookie, so a rebound DNS name gains a
                # browser nothing; cross-origin browser calls are the `cors:` policy's to allow.
                security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
                max_request_body_size=self.gateway.config.limits.max_body_bytes)
            running = self._views[server] = Running(manager)
        return running

    async def aclose(self) -> None:
        for running in self._views.values():
            await running.aclose()


def _no_stream() -> GatewayError:
    """GET (a stream of server-initiated messages) is refused with 405, as the transport allows: a stateless server
    has nothing to send outside a request's own stream, and an idle stream would hold the connection forever."""
    error = GatewayError("This MCP endpoint is stateless: it offers no GET stream; POST each message.", status=405,
                         type="invalid_request_error", code="method_not_allowed")
    error.headers = {"Allow": "POST"}
    return error


def _is_initialize(body: bytes) -> bool:
    if b'"initialize"' not in body:
        return False
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False  # the SDK answers it with a parse error
    return isinstance(message, dict) and message.get("method") == "initialize"


def _replayed(body: bytes, receive: Receive) -> Receive:
    """`receive` with the body (read by the edge, within its limits) given again first."""
    pending = [body]

    async def again() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return again


def _stamped(flow: Flow, send: Send) -> Send:
    """`send` with the flow's headers (request id, overhead, limits) on the response, its status noted."""
    async def stamped(message: Message) -> None:
        if message["type"] == "http.response.start":
            flow.exchange.status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), *flow.response_headers()]}
        await send(message)

    return stamped


async def _render(send: Send, error: GatewayError, headers: Headers) -> None:
    """An error before the MCP transport saw the request; a 401 names the scheme (`WWW-Authenticate: Bearer`)."""
    await send_error(send, error, [*headers, WWW_AUTHENTICATE] if error.status == 401 else headers)


def _sluice_version() -> str:
    try:
        return version("sluice")
    except PackageNotFoundError:
        return "unknown"
