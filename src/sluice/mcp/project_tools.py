"""Project POST routes as MCP tools: names and input schemas from the routes' body models, calls made in-process
through the gateway's FastAPI app with the caller's credentials (so every check of an HTTP call applies)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.routing import APIRoute
from mcp import types
from pydantic import TypeAdapter

from sluice.errors import GatewayError, UpstreamError
from sluice.gateway import Gateway
from sluice.http.asgi import ASGIApp, Message, Scope
from sluice.pipeline.flow import Flow
from sluice.pipeline.wrapped import serve_wrapped
from sluice.projects import any_to_mount
from sluice.projects.api import MountedProject
from sluice.projects.loader import load_projects

logger = logging.getLogger("sluice.mcp")

PREFIX = "project"
"""Project tools are `project__{project}__{route}`; `project` is refused as an upstream server's name."""
FORWARDED = frozenset({b"authorization", b"x-api-key", b"host", b"user-agent", b"x-forwarded-for", b"forwarded",
                       b"x-real-ip"})
"""The MCP request's headers an internal project call carries: the caller's credentials and where it came from
(so `limits.per_ip` and trusted proxies see the same client), nothing else."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class ProjectTool:
    """One project route offered as a tool: which project, the gateway path it is called at, and the tool."""

    project: str
    path: str
    tool: types.Tool


def tool_name(project: str, route: str) -> str:
    """`project__{project}__{route}`, with any character MCP clients refuse in a tool name made `_`."""
    return _UNSAFE.sub("_", f"{PREFIX}__{project}__{route}")


def project_tools(projects: list[MountedProject]) -> dict[str, ProjectTool]:
    """A tool for each POST route of each project that takes a JSON object body and nothing else required (no path
    parameter, no required query parameter or header); the others are left out, with a debug log line."""
    tools: dict[str, ProjectTool] = {}
    for mounted in projects:
        for route in mounted.project.router.routes:
            found = _tool_of(mounted, route) if isinstance(route, APIRoute) else None
            if found is None:
                continue
            name = found.tool.name
            for number in range(2, 100):  # two routes with one name (or two that differ in a `.` only)
                if name not in tools:
                    break
                name = f"{found.tool.name}_{number}"
            tools[name] = ProjectTool(found.project, found.path, found.tool.model_copy(update={"name": name}))
    return tools


def _tool_of(mounted: MountedProject, route: APIRoute) -> ProjectTool | None:
    path = f"/projects/{mounted.name}{route.path}"
    why_not = _unsuitable(route)
    if why_not is not None:
        logger.debug("MCP: project route POST %s is not a tool: %s", path, why_not)
        return None
    schema = _input_schema(route)
    if schema is None:
        logger.debug("MCP: project route POST %s is not a tool: its body is not a JSON object", path)
        return None
    description = route.summary or route.description or f"POST {path}"
    tool = types.Tool(name=tool_name(mounted.name, route.name), title=route.summary, inputSchema=schema,
                      outputSchema=_output_schema(route),
                      description=f"{description} (project {mounted.name!r}, POST {path}; the reply's JSON).")
    return ProjectTool(mounted.name, path, tool)


def _unsuitable(route: APIRoute) -> str | None:
    if "POST" not in (route.methods or ()):
        return "not a POST route"
    if "{" in route.path:
        return "it has path parameters"
    for dependant in _dependants(route.dependant):
        for parameter in (*dependant.query_params, *dependant.header_params, *dependant.cookie_params):
            if parameter.field_info.is_required():
                return f"it requires the parameter {parameter.name!r}"
    return None


def _dependants(dependant: Any) -> Iterator[Any]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _input_schema(route: APIRoute) -> dict[str, Any] | None:
    """The JSON schema of the body FastAPI reads (`body_field`: the model, or the model FastAPI makes of several
    body parameters); an empty object for a route without a body; None when the body is no JSON object."""
    field = route.body_field
    if field is None:
        return {"type": "object", "properties": {}}
    annotation = field.field_info.annotation
    if annotation is None:
        return None
    schema: dict[str, Any] = TypeAdapter(annotation).json_schema()
    return schema if schema.get("type") == "object" else None


def _output_schema(route: APIRoute) -> dict[str, Any] | None:
    """The JSON schema of the route's `response_model` as it is serialised, when that is an object (the reply is
    then the tool's structured content, which clients check against it); else None."""
    if route.response_model is None:
        return None
    try:
        schema: dict[str, Any] = TypeAdapter(route.response_model).json_schema(mode="serialization")
    except Exception:  # a response model pydantic cannot describe: the tool simply declares no output schema
        logger.debug("MCP: no output schema for %s", route.path, exc_info=True)
        return None
    return schema if schema.get("type") == "object" else None


class ProjectCalls:
    """Calls project tools through the gateway's FastAPI app, as the HTTP path does (`serve_wrapped`): address
    limits, the caller's key and project scope, key limits, body checks, a request-log row, a span."""

    def __init__(self, gateway: Gateway, api: Callable[[], ASGIApp]) -> None:
        self.gateway = gateway
        self._api = api

    async def call(self, edge: Flow, edge_scope: Scope, tool_flow: Flow, tool: ProjectTool,
                   arguments: dict[str, Any]) -> types.CallToolResult:
        """The route's JSON reply as the tool's result; GatewayError with the route's status when it refused or
        failed (the tool call's row then has that status)."""
        body = orjson.dumps(arguments)
        scope = self._scope(edge, edge_scope, tool_flow, tool.path, body)
        reply = _Reply(self.gateway.config.limits.max_body_bytes)
        flow = Flow.begin(self.gateway, scope, None, observers=(), counted=True)
        await serve_wrapped(flow, self._api(), scope, reply.receive(body), reply.send)
        return reply.result(tool)

    @staticmethod
    def _scope(edge: Flow, edge_scope: Scope, tool_flow: Flow, path: str, body: bytes) -> Scope:
        headers = [(name, value) for name, value in edge_scope["headers"] if name.lower() in FORWARDED]
        headers += [(b"content-type", b"application/json"), (b"accept", b"application/json"),
                    (b"content-length", str(len(body)).encode()), (b"x-request-id", edge.request_id)]
        trace = tool_flow.exchange.trace
        if trace is not None:  # the project request's server span: a child of the tool call's span
            headers.append((b"traceparent", trace.traceparent_for_upstream().encode()))
        return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                "scheme": edge_scope.get("scheme", "http"), "path": path, "raw_path": path.encode(),
                "root_path": "", "query_string": b"", "headers": headers, "client": edge_scope.get("client"),
                "server": edge_scope.get("server"), "state": {}}


class _Reply:
    """The internal request's two ends: the body given once, then a wait until the reply is complete (a streamed
    reply must not read a disconnect before it ends), and the reply collected within `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.status = 500
        self.content_type = b""
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = asyncio.Event()

    def receive(self, body: bytes) -> Callable[[], Any]:
        pending = [body]

        async def receive() -> Message:
            if pending:
                return {"type": "http.request", "body": pending.pop(), "more_body": False}
            await self.done.wait()
            return {"type": "http.disconnect"}

        return receive

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.content_type = dict(message.get("headers", ())).get(b"content-type", b"")
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size <= self.limit:
                self.chunks.append(chunk)
            if not message.get("more_body", False):
                self.done.set()

    def result(self, tool: ProjectTool) -> types.CallToolResult:
        self.done.set()
        raw = b"".join(self.chunks)
        if self.size > self.limit:
            raise UpstreamError(f"Project {tool.project!r} answered {tool.path} with more than {self.limit} bytes "
                                "(limits.max_body_bytes).", status=502, code="reply_too_large")
        parsed = _json(raw) if b"json" in self.content_type else None
        if self.status >= 400:
            raise GatewayError(_error_message(parsed, raw, self.status), status=self.status,
                               type="project_error", code=f"http_{self.status}")
        text = raw.decode("utf-8", "replace")
        structured = parsed if isinstance(parsed, dict) else None
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                    structuredContent=structured)


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _error_message(parsed: Any, raw: bytes, status: int) -> str:
    """The gateway's error message (`{"error": {"message"}}`), FastAPI's `detail`, or the reply's text."""
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return f"{status}: {error['message']}"
        if "detail" in parsed:
            return f"{status}: {orjson.dumps(parsed['detail']).decode()}"
    return f"{status}: {raw[:1000].decode('utf-8', 'replace')}"


class ProjectTools:
    """The project tools of one gateway, found on first use (the routes are fixed once the projects are loaded),
    and their calls."""

    def __init__(self, gateway: Gateway, api: Callable[[], ASGIApp]) -> None:
        self.gateway = gateway
        self.calls = ProjectCalls(gateway, api)
        self._tools: dict[str, ProjectTool] | None = None

    def tools(self) -> dict[str, ProjectTool]:
        if self._tools is None:
            config = self.gateway.config
            self._tools = project_tools(load_projects(config)) if any_to_mount(config) else {}
        return self._tools
