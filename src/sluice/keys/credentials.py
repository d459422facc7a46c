"""The one reader of a request's credentials: the API key it presents, from its raw ASGI headers."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from sluice.keys.presented import presented_key

AUTHORIZATION = b"authorization"
API_KEY = b"x-api-key"


def presented_in(headers: Mapping[bytes, bytes]) -> str | None:
    """The key from `X-API-Key` or `Authorization: Bearer` (header names as ASGI gives them: lower-case bytes)."""
    api_key = headers.get(API_KEY)
    authorization = headers.get(AUTHORIZATION)
    if not api_key and not authorization:
        return None
    return presented_key(authorization.decode("latin-1") if authorization else None,
                         api_key.decode("latin-1") if api_key else None)


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two secrets that does not leak the expected length either (digests compared, in
    memory only)."""
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8")).digest(),
                               hashlib.sha256(expected.encode("utf-8")).digest())
