"""The FastAPI dependency that authenticates a caller and yields its Principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from sluice.gateway import Gateway
from sluice.http.asgi import request_headers
from sluice.keys.credentials import presented_in
from sluice.keys.principal import Principal
from sluice.pipeline.flow import Flow
from sluice.pipeline.wrapped import FLOW_KEY

# These two only document the schemes in the OpenAPI document: the key is read by `presented_in`, as everywhere.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <Sluice API key>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <Sluice API key>")


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_principal(
    request: Request,
    gateway: Annotated[Gateway, Depends(get_gateway)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The caller, as authenticated before the body was read (pipeline/gate.py), or here when the app is served on
    its own; AuthenticationFailed (mapped to a 401 OpenAI-shaped error) without a working key."""
    flow: Flow | None = request.scope.get(FLOW_KEY)
    if flow is not None and flow.principal is not None:
        return flow.principal
    return await gateway.keys.authenticate(presented_in(request_headers(request.scope)))


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
CurrentGateway = Annotated[Gateway, Depends(get_gateway)]
