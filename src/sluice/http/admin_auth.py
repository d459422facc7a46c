"""The FastAPI dependency that admits admins to the /admin routes: SLUICE_ADMIN_KEY, or a key with the admin scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from sluice.errors import AuthenticationFailed, PermissionDenied
from sluice.gateway import Gateway
from sluice.http.asgi import request_headers
from sluice.http.auth import get_gateway
from sluice.keys.credentials import presented_in, same_secret
from sluice.keys.principal import Principal

# These two only document the schemes in the OpenAPI document: the key is read by `presented_in`, as everywhere.
_bearer = HTTPBearer(auto_error=False, scheme_name="AdminBearer",
                     description="Authorization: Bearer <SLUICE_ADMIN_KEY, or an API key with the admin scope>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="AdminAPIKey",
                        description="X-API-Key: <SLUICE_ADMIN_KEY, or an API key with the admin scope>")

ADMIN = Principal(key_id="admin", name="SLUICE_ADMIN_KEY", admin=True)


async def require_admin(
    request: Request,
    gateway: Annotated[Gateway, Depends(get_gateway)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The admin: 401 for a missing or non-working key, 403 for a working key without the admin scope."""
    presented = presented_in(request_headers(request.scope))
    if not presented:
        raise AuthenticationFailed("The admin API needs a key: send 'Authorization: Bearer KEY' with SLUICE_ADMIN_KEY "
                                   "or an API key that has the admin scope.")
    configured = gateway.settings.admin_key.get_secret_value() if gateway.settings.admin_key else ""
    if configured and same_secret(presented, configured):
        return ADMIN
    principal = await gateway.keys.authenticate(presented)
    if not principal.admin:
        raise PermissionDenied("This API key may not use the admin API: it needs the admin scope "
                               "(or use SLUICE_ADMIN_KEY).")
    return principal


AdminAccess = Depends(require_admin)
CurrentAdmin = Annotated[Principal, AdminAccess]
