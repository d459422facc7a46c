"""The API key a request presents, from its headers (imported by the request log's writer too: no dependencies)."""

from __future__ import annotations


def presented_key(authorization: str | None, api_key_header: str | None) -> str | None:
    """The key from `X-API-Key` or from an `Authorization: Bearer` header."""
    if api_key_header:
        return api_key_header.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
    return None
