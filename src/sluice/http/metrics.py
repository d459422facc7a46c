"""`GET /metrics`: Prometheus text, behind an API key, the admin key or Basic credentials as configured."""

from __future__ import annotations

import base64
import hashlib
import hmac

from sluice.config import MetricsConfig
from sluice.errors import AuthenticationFailed, GatewayError
from sluice.gateway import Gateway
from sluice.http.asgi import Scope
from sluice.keys.presented import presented_key
from sluice.keys.principal import Principal


async def metrics(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes], principal: Principal | None) -> bytes:
    authorization, api_key = headers.get(b"authorization"), headers.get(b"x-api-key")
    await check_scrape_access(gateway, authorization.decode("latin-1") if authorization else None,
                              api_key.decode("latin-1") if api_key else None)
    return gateway.metrics.render()


async def check_scrape_access(gateway: Gateway, authorization: str | None, api_key: str | None) -> None:
    """Passes when the config lets this scrape in; otherwise a 401 that says what would be accepted."""
    config = gateway.config.metrics
    if not config.require_key and config.basic_auth is None:
        return
    if config.basic_auth is not None and authorization and authorization[:6].lower() == "basic ":
        if _basic_matches(config, authorization[6:].strip()):
            return
        raise _refused(config, "Incorrect Basic credentials for /metrics.")
    key = presented_key(authorization, api_key)
    if key and gateway.settings.admin_key and _same(key, gateway.settings.admin_key.get_secret_value()):
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
    return _same(user, expected.username) & _same(password, expected.password.get_secret_value())


def _same(given: str, expected: str) -> bool:
    """Constant-time equality that does not leak the expected length either."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())


def _refused(config: MetricsConfig, message: str) -> GatewayError:
    error = AuthenticationFailed(message)
    if config.basic_auth is not None:
        error.headers = {"WWW-Authenticate": 'Basic realm="sluice metrics"'}
    return error
