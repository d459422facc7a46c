"""The project plugin contract, and the gateway client handed to project code.

A project is a Python module that exposes `project = Project(router=..., models=..., providers=...)`.
Sluice mounts `project.router` at `/projects/{name}`; the caller's key must allow the project (else 403).
Route handlers take a `ProjectClient` parameter and make every upstream call through it, so each call
goes the way an outside `/v1` call goes: same validation, model routing, key scopes and providers, and
one exchange record per call for the request log, traces and metrics.

    router = APIRouter()

    @router.post("/hello")
    async def hello(client: ProjectClient) -> dict[str, str]:
        reply = await client.chat("mock", [{"role": "user", "content": "hi"}])
        return {"answer": reply["choices"][0]["message"]["content"]}

    project = Project(router=router, models={"mock"})
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Collection
from dataclasses import dataclass, replace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request

from sluice.errors import GatewayError, PermissionDenied, UpstreamError
from sluice.http.auth import CurrentPrincipal
from sluice.http.openai import SCHEMAS, parse_body
from sluice.json_bytes import dumps_to_size
from sluice.keys.principal import Principal
from sluice.pipeline.flow import Flow
from sluice.pipeline.wrapped import FLOW_KEY
from sluice.providers.base import JSONObject, Operation, UpstreamRequest
from sluice.routing.table import ModelRoute
from sluice.streaming import SSEDecoder


def _messages(messages: list[JSONObject] | None) -> JSONObject:
    return {} if messages is None else {"messages": messages}


@dataclass(frozen=True)
class Project:
    """What a plugin module declares: its routes and the models and providers it may call (None: any)."""

    router: APIRouter
    models: Collection[str] | None = None
    providers: Collection[str] | None = None
    description: str = ""


@dataclass(frozen=True)
class MountedProject:
    """A project as mounted: its name and the models and providers it may call, after config overrides."""

    name: str
    project: Project
    models: frozenset[str] | None
    providers: frozenset[str] | None

    def check_model(self, model: str) -> None:
        """PermissionDenied (403) unless this project declared `model`."""
        if self.models is not None and model not in self.models:
            raise PermissionDenied(f"Project {self.name!r} may not call model {model!r}.", param="model")

    def check_provider(self, provider: str) -> None:
        """PermissionDenied (403) unless this project declared `provider`."""
        if self.providers is not None and provider not in self.providers:
            raise PermissionDenied(f"Project {self.name!r} may not call provider {provider!r}.")


class GatewayClient:
    """Upstream calls for project code, made as the caller (key scopes apply) and recorded like outside calls: each
    is a child flow of the project request's (pipeline/flow.py), its span a child of the request's server span."""

    def __init__(self, flow: Flow, project: MountedProject) -> None:
        self.flow = flow
        self.gateway = flow.gateway
        self.principal: Principal = _as_project_sees(flow.principal, project)
        self.project = project
        self.request_id = flow.exchange.request_id
        self.endpoint = flow.exchange.endpoint

    async def chat(self, model: str, messages: list[JSONObject] | None = None, **params: Any) -> JSONObject:
        """A chat completion (`params` are any other OpenAI request fields, or `prompt={"name": …,
        "variables": {…}}` for a prompt template, with or instead of `messages`); the parsed reply."""
        return await self.send("chat", {**params, "model": model, **_messages(messages), "stream": False})

    async def embeddings(self, model: str, input: str | list[str], **params: Any) -> JSONObject:
        return await self.send("embeddings", {**params, "model": model, "input": input})

    def stream_chat(self, model: str, messages: list[JSONObject] | None = None, **params: Any
                    ) -> AsyncGenerator[JSONObject, None]:
        """A streamed chat completion: each `chat.completion.chunk` object as it arrives (`prompt=` as for chat)."""
        return self.stream("chat", {**params, "model": model, **_messages(messages), "stream": True})

    async def send(self, operation: Operation, body: JSONObject) -> JSONObject:
        """One complete call; GatewayError (with the upstream's status) if it fails."""
        flow = self.flow.child(operation, str(body.get("model")), self.principal)
        try:
            request, route = await self._prepare(flow, operation, body)
            parsed: JSONObject = orjson.loads(await flow.call(request, route))
            return parsed
        except GatewayError as exc:
            flow.failed(exc)
            raise
        finally:
            flow.finish()

    async def stream(self, operation: Operation, body: JSONObject) -> AsyncGenerator[JSONObject, None]:
        """One streamed call: each event's JSON object; an error event from upstream raises UpstreamError."""
        flow = self.flow.child(operation, str(body.get("model")), self.principal)
        try:
            request, route = await self._prepare(flow, operation, {**body, "stream": True})
            chunks = await flow.open_stream(request, route)
            decoder = SSEDecoder()
            try:
                async for chunk in chunks:
                    for event in decoder.feed(chunk):
                        if event.data and event.data != "[DONE]":
                            yield _event_object(event.data)
            finally:
                await chunks.aclose()
        except GatewayError as exc:
            flow.failed(exc)
            raise
        finally:
            flow.finish()

    async def _prepare(self, flow: Flow, operation: Operation, body: JSONObject
                       ) -> tuple[UpstreamRequest, ModelRoute]:
        """The same validation, model routing, key scopes and model limits as `/v1`, plus the project's own
        declaration (its providers: only those deployments are tried)."""
        model = str(body.get("model"))
        self.project.check_model(model)
        raw = flow.exchange.request_body = dumps_to_size(body)
        parsed = parse_body(raw, SCHEMAS[operation])
        route = self.gateway.routes.resolve(model)
        if not route.pool.reachable_by(self.project.providers):
            self.project.check_provider(route.provider)
        request, route = flow.route(operation, parsed, raw)
        await flow.admit(model=flow.exchange.model, body=request.body, size=len(raw), per_key=False)
        return request, route


def _as_project_sees(principal: Principal | None, project: MountedProject) -> Principal:
    """The caller as its project's calls run: `projects_only` lifted, providers narrowed to the project's."""
    assert principal is not None
    seen = principal.in_project()
    if project.providers is None:
        return seen
    allowed = project.providers if seen.providers is None else seen.providers & project.providers
    return replace(seen, providers=frozenset(allowed))


def _event_object(data: str) -> JSONObject:
    parsed = orjson.loads(data)
    if not isinstance(parsed, dict):
        raise UpstreamError("The upstream sent a stream event that is not a JSON object.", status=502)
    error = parsed.get("error")
    if isinstance(error, dict):
        raise UpstreamError(str(error.get("message") or "The upstream stream failed."), status=502,
                            type=str(error.get("type") or "upstream_error"), code=error.get("code"))
    return parsed


def project_guard(mounted: MountedProject) -> Callable[[Request, Principal], None]:
    """The dependency on every route of `mounted`: the key must allow the project; the request's flow becomes the
    project's (its server span names the project) and remembers it."""

    def guard(request: Request, principal: CurrentPrincipal) -> None:
        principal.check_project(mounted.name)
        flow = flow_of(request)
        flow.exchange.project = mounted.name
        flow.observers = flow.gateway.request_observers
        flow.identify(principal)
        request.state.sluice_project = mounted

    return guard


def flow_of(request: Request) -> Flow:
    """The flow the gateway opened for this request (pipeline/wrapped.py)."""
    flow: Flow | None = request.scope.get(FLOW_KEY)
    if flow is None:
        raise GatewayError("This route is not served through the gateway's request path.")
    return flow


def gateway_client(request: Request) -> GatewayClient:
    """The `ProjectClient` of one request to a project route."""
    mounted: MountedProject | None = getattr(request.state, "sluice_project", None)
    if mounted is None:
        raise GatewayError("ProjectClient is only available on the routes of a mounted project.")
    return GatewayClient(flow_of(request), mounted)


ProjectClient = Annotated[GatewayClient, Depends(gateway_client)]
"""Declare a route parameter of this type to get the gateway client for that request."""
