"""`GET /metrics`: Prometheus text, behind an API key, the admin key or Basic credentials as configured."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from sluice.config import MetricsConfig
from sluice.errors import AuthenticationFailed, GatewayError
from sluice.gateway import Gateway
from sluice.http.asgi import Scope
from sluice.keys.credentials import AUTHORIZATION, presented_in, same_secret
from sluice.keys.principal import Principal


async def metrics(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes], principal: Principal | None) -> bytes:
    await check_scrape_access(gateway, headers)
    return gateway.metrics.render()


async def check_scrape_access(gateway: Gateway, headers: Mapping[bytes, bytes]) -> None:
    """Passes when the config lets this scrape in; otherwise a 401 that says what would be accepted."""
    config = gateway.config.metrics
    if not config.require_key and config.basic_auth is None:
        return
    authorization = headers.get(AUTHORIZATION)
    if config.basic_auth is not None and authorization and authorization[:6].lower() == b"basic ":
        if _basic_matches(config, authorization[6:].strip().decode("latin-1")):
            return
        raise _refused(config, "Incorrect Basic credentials for /metrics.")
    key = presented_in(headers)
    if key and gateway.settings.admin_key and same_secret(key, gateway.settings.admin_key.get_secret_value()):
        return
    if config.require_key:
        if not key:
            raise _refused(config, "/metrics needs an API key (metrics.require_key is true in the config); send "
                                   "'Authorization: Bearer KEY', or set metrics.require_key: false.")
        await gateway.keys.authenticate(key)
        return
    raise _refused(config, "/metrics needs the Basic credentials set in metrics.basic_auth, or the admin key.")


def _basic_matches(config: MetricsConfig, encoded: str) -> bool:
    assert config.basic_auth is not None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    expected = config.basic_auth
    return same_secret(user, expected.username) & same_secret(password, expected.password.get_secret_value())


def _refused(config: MetricsConfig, message: str) -> GatewayError:
    error = AuthenticationFailed(message)
    if config.basic_auth is not None:
        error.headers = {"WWW-Authenticate": 'Basic realm="sluice metrics"'}
    return error
