"""What a request to a FastAPI route must pass before its body is read: the address limits (`limits.per_ip`), then,
for the admin and project routes, the key, from its headers alone, so an unauthenticated caller never has a byte
of its body read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice.errors import AuthenticationFailed, PermissionDenied
from sluice.keys.credentials import presented_in, same_secret
from sluice.keys.principal import Principal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sluice.gateway import Gateway
    from sluice.http.asgi import Scope
    from sluice.pipeline.flow import Flow

ADMIN = Principal(key_id="admin", name="SLUICE_ADMIN_KEY", admin=True)
ADMITTED_ADMIN = "sluice.admin"
"""Where the scope carries the admin admitted here, for the routes' dependency (http/admin_auth.py)."""
ADDRESS_ADMITTED = "sluice.address_admitted"
"""Set in the scope once `limits.per_ip` was charged here: the routes' dependency must not charge it again."""


async def admin_of(gateway: Gateway, headers: Mapping[bytes, bytes]) -> Principal:
    """The admin: 401 for a missing or non-working key, 403 for a working key without the admin scope."""
    presented = presented_in(headers)
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


async def admit_before_body(flow: Flow, scope: Scope) -> None:
    """The address limits of any FastAPI route (the keyless demo stream's too), then the caller of an admin or
    project request (GatewayError: 401, 403, 429, 503)."""
    await flow.admit_address(scope)
    scope[ADDRESS_ADMITTED] = True
    path: str = scope["path"]
    if path.startswith("/admin/"):
        scope[ADMITTED_ADMIN] = await admin_of(flow.gateway, flow.headers)
    elif path.startswith("/projects/"):
        await flow.authenticate()
