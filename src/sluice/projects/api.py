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

import time
from collections.abc import AsyncGenerator, Callable, Collection
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request

from sluice.errors import GatewayError, PermissionDenied, UpstreamError
from sluice.exchange import Exchange, notify
from sluice.gateway import Gateway
from sluice.http.auth import CurrentGateway, CurrentPrincipal
from sluice.http.openai import request_id_of, upstream_request
from sluice.json_bytes import dumps_to_size
from sluice.keys.principal import Principal
from sluice.providers.base import JSONObject, Operation, Provider, UpstreamRequest
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
    """Upstream calls for project code, made as the caller (key scopes apply) and recorded like outside calls."""

    def __init__(self, gateway: Gateway, principal: Principal, project: MountedProject, request_id: str,
                 endpoint: str) -> None:
        self.gateway = gateway
        self.principal = principal
        self.project = project
        self.request_id = request_id
        self.endpoint = endpoint

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
        exchange = self._exchange(operation, body)
        try:
            request, provider = self._prepare(operation, body, exchange)
            started = time.perf_counter()
            reply = await self.gateway.guards[provider.name].send(request)  # breaker and retries
            exchange.latency_upstream = time.perf_counter() - started
            exchange.response_body, exchange.status = reply, 200
            parsed: JSONObject = orjson.loads(reply)
            return parsed
        except GatewayError as exc:
            self._failed(exchange, exc)
            raise
        finally:
            self._finish(exchange)

    async def stream(self, operation: Operation, body: JSONObject) -> AsyncGenerator[JSONObject, None]:
        """One streamed call: each event's JSON object; an error event from upstream raises UpstreamError."""
        exchange = self._exchange(operation, {**body, "stream": True})
        try:
            request, provider = self._prepare(operation, {**body, "stream": True}, exchange)
            chunks = await self.gateway.guards[provider.name].stream(request)
            exchange.status = 200
            decoder = SSEDecoder()
            try:
                async for chunk in chunks:
                    exchange.chunks.append(chunk)
                    for event in decoder.feed(chunk):
                        if event.data and event.data != "[DONE]":
                            yield _event_object(event.data)
            finally:
                await chunks.aclose()
        except GatewayError as exc:
            self._failed(exchange, exc)
            raise
        finally:
            self._finish(exchange)

    def _prepare(self, operation: Operation, body: JSONObject, exchange: Exchange
                 ) -> tuple[UpstreamRequest, Provider]:
        """The same validation, model routing and key scopes as `/v1`, plus the project's own declaration."""
        self.project.check_model(str(body.get("model")))
        raw = dumps_to_size(body)
        exchange.request_body = raw
        request, provider = upstream_request(self.gateway, operation, self.principal, raw, {},
                                             self.request_id.encode(), exchange)
        exchange.provider, exchange.upstream_model = provider.name, str(request.body.get("model"))
        self.project.check_provider(provider.name)
        return request, provider

    def _exchange(self, operation: Operation, body: JSONObject) -> Exchange:
        return Exchange(request_id=self.request_id, endpoint=self.endpoint, method="POST", started_at=time.time(),
                        operation=operation, key_id=self.principal.key_id, principal=self.principal,
                        model=str(body.get("model")),
                        project=self.project.name, stream=bool(body.get("stream")))

    @staticmethod
    def _failed(exchange: Exchange, error: GatewayError) -> None:
        exchange.status, exchange.error = error.status, error.message

    def _finish(self, exchange: Exchange) -> None:
        exchange.latency_total = time.time() - exchange.started_at
        notify(self.gateway.observers, exchange)


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
    """The dependency on every route of `mounted`: the key must allow the project; remembers the project."""

    def guard(request: Request, principal: CurrentPrincipal) -> None:
        principal.check_project(mounted.name)
        request.state.sluice_project = mounted

    return guard


def gateway_client(request: Request, gateway: CurrentGateway, principal: CurrentPrincipal) -> GatewayClient:
    """The `ProjectClient` of one request to a project route."""
    mounted: MountedProject | None = getattr(request.state, "sluice_project", None)
    if mounted is None:
        raise GatewayError("ProjectClient is only available on the routes of a mounted project.")
    request_id = request_id_of(dict(request.scope["headers"])).decode()
    return GatewayClient(gateway, principal, mounted, request_id, request.url.path)


ProjectClient = Annotated[GatewayClient, Depends(gateway_client)]
"""Declare a route parameter of this type to get the gateway client for that request."""
