"""OAuth 2.0 client credentials for an upstream MCP server: an `httpx.Auth` that fetches, caches and renews the
bearer token (the secret and the tokens are never logged nor put in an error's text)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx

from sluice.errors import UpstreamError
from sluice.mcp.options import McpOAuthConfig

RENEW_BEFORE_SECONDS = 30.0
"""A token is renewed this long before `expires_in` runs out (or at nine tenths of a shorter lifetime), so a request
in flight never carries one that expires on the way."""


class ClientCredentials(httpx.Auth):
    """Sends `Authorization: Bearer TOKEN` on every request to the upstream; the token is fetched on first use,
    reused by every session of this upstream until shortly before it expires, and fetched again once when the
    upstream answers 401 (then that request is sent once more, and its answer is final)."""

    requires_request_body = True  # a request retried after a 401 is sent again, body and all

    def __init__(self, server: str, config: McpOAuthConfig, timeout_seconds: float) -> None:
        self.server = server
        self.config = config
        self.timeout = httpx.Timeout(timeout_seconds)
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("ClientCredentials works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {await self.token(stale=token)}"
            yield request

    async def token(self, stale: str | None = None) -> str:
        """The cached token while it is fresh (and is not `stale`, the one the upstream just refused); else a new
        one, fetched once however many requests wait for it."""
        async with self._lock:
            if self._token is not None and self._token != stale and time.monotonic() < self._renew_at:
                return self._token
            token, lifetime = await self._fetch()
            self._token = token
            self._renew_at = time.monotonic() + _reuse_seconds(lifetime)
            return token

    async def _fetch(self) -> tuple[str, float | None]:
        """A new access token and its lifetime in seconds (None when the server gives none)."""
        config = self.config
        form = {"grant_type": "client_credentials"}
        form.update({name: value for name, value in (("scope", config.scope), ("audience", config.audience))
                     if value})
        auth: httpx.BasicAuth | None = None
        secret = config.client_secret.get_secret_value()
        if config.client_auth == "client_secret_basic":
            auth = httpx.BasicAuth(config.client_id, secret)
        else:
            form.update(client_id=config.client_id, client_secret=secret)
        try:
            async with httpx.AsyncClient(timeout=self.timeout, auth=auth) as http:
                response = await http.post(config.token_url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise self._failed(f"could not be reached ({type(exc).__name__})") from None
        return self._token_of(response)

    def _token_of(self, response: httpx.Response) -> tuple[str, float | None]:
        payload = _json(response)
        if response.status_code != 200:
            code = payload.get("error") if isinstance(payload, dict) else None
            named = f" ({code})" if isinstance(code, str) and code.isascii() and len(code) <= 64 else ""
            raise self._failed(f"answered {response.status_code}{named}")
        token = payload.get("access_token") if isinstance(payload, dict) else None
        kind = payload.get("token_type", "Bearer") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token or not isinstance(kind, str) or kind.lower() != "bearer":
            raise self._failed("gave no bearer access_token")
        lifetime = payload.get("expires_in")
        valid = isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0
        return token, float(lifetime) if valid else None

    def _failed(self, what: str) -> UpstreamError:
        return UpstreamError(f"MCP server {self.server!r}: its OAuth token endpoint {what}.", status=502,
                             code="upstream_auth_failed")


def _reuse_seconds(lifetime: float | None) -> float:
    """How long a token is used: until shortly before it expires; without `expires_in`, until the upstream
    refuses it."""
    if lifetime is None:
        return float("inf")
    return max(lifetime - RENEW_BEFORE_SECONDS, lifetime * 0.9)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
