"""The API key in a request's credential header values; `credentials.presented_in` is what readers call."""

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
