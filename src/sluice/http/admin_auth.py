"""The FastAPI dependency that admits admins to the /admin routes: SLUICE_ADMIN_KEY, or a key with the admin scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from sluice.gateway import Gateway
from sluice.http.asgi import request_headers
from sluice.http.auth import get_gateway
from sluice.keys.principal import Principal
from sluice.pipeline.gate import ADMIN, ADMITTED_ADMIN, admin_of

# These two only document the schemes in the OpenAPI document: the key is read by `presented_in`, as everywhere.
_bearer = HTTPBearer(auto_error=False, scheme_name="AdminBearer",
                     description="Authorization: Bearer <SLUICE_ADMIN_KEY, or an API key with the admin scope>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="AdminAPIKey",
                        description="X-API-Key: <SLUICE_ADMIN_KEY, or an API key with the admin scope>")

__all__ = ["ADMIN", "AdminAccess", "CurrentAdmin", "require_admin"]


async def require_admin(
    request: Request,
    gateway: Annotated[Gateway, Depends(get_gateway)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The admin, as admitted before the body was read (pipeline/gate.py), or checked here when the app is served
    on its own: 401 for a missing or non-working key, 403 for a working key without the admin scope."""
    admitted: Principal | None = request.scope.get(ADMITTED_ADMIN)
    if admitted is not None:
        return admitted
    return await admin_of(gateway, request_headers(request.scope))


AdminAccess = Depends(require_admin)
CurrentAdmin = Annotated[Principal, AdminAccess]
