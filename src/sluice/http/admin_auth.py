"""The FastAPI dependency that admits the admin key (SLUICE_ADMIN_KEY) to the /admin routes."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from sluice.errors import AuthenticationFailed, PermissionDenied
from sluice.gateway import Gateway
from sluice.http.auth import get_gateway

_bearer = HTTPBearer(auto_error=False, scheme_name="AdminBearer", description="Authorization: Bearer <admin key>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="AdminAPIKey",
                        description="X-API-Key: <admin key>")


def require_admin(
    gateway: Annotated[Gateway, Depends(get_gateway)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> None:
    """Passes for the admin key; 403 when no admin key is configured, 401 for a missing or wrong key."""
    configured = gateway.settings.admin_key.get_secret_value() if gateway.settings.admin_key else ""
    if not configured:
        raise PermissionDenied("The admin API is disabled: set SLUICE_ADMIN_KEY to enable it.")
    presented = api_key or (bearer.credentials if bearer else "")
    if not presented:
        raise AuthenticationFailed("The admin API needs the admin key: send 'Authorization: Bearer ADMIN_KEY'.")
    if not hmac.compare_digest(_digest(presented), _digest(configured)):
        raise AuthenticationFailed("Incorrect admin key provided.")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


AdminAccess = Depends(require_admin)
