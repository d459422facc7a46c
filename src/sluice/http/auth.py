"""The FastAPI dependency that authenticates a caller and yields its Principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from sluice.gateway import Gateway
from sluice.http.asgi import request_headers
from sluice.keys.credentials import presented_in
from sluice.keys.principal import Principal

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
    """The caller, or AuthenticationFailed (mapped to a 401 OpenAI-shaped error)."""
    return await gateway.keys.authenticate(presented_in(request_headers(request.scope)))


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
CurrentGateway = Annotated[Gateway, Depends(get_gateway)]
