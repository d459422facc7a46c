"""Keys given in SLUICE_API_KEYS: held only as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from sluice.errors import AuthenticationFailed
from sluice.keys.principal import ANONYMOUS, Principal

_MISSING = AuthenticationFailed(
    "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'."
)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class StaticKeyRing:
    """Authenticates callers against a fixed set of keys."""

    def __init__(self, keys: Iterable[str], *, allow_no_auth: bool = False) -> None:
        self._digests = [key_digest(key) for key in keys]
        self._principals = {digest: Principal(key_id="key-" + digest.hex()[:12]) for digest in self._digests}
        self.allow_no_auth = allow_no_auth

    def authenticate(self, presented: str | None) -> Principal:
        """The principal for `presented`, or AuthenticationFailed; timing does not depend on the key."""
        if not presented:
            if self.allow_no_auth:
                return ANONYMOUS
            raise _MISSING
        digest = key_digest(presented)
        match = b""
        for known in self._digests:
            if hmac.compare_digest(known, digest):
                match = known
        if match:
            return self._principals[match]
        raise AuthenticationFailed("Incorrect API key provided.")


def presented_key(authorization: str | None, api_key_header: str | None) -> str | None:
    """The key from `X-API-Key` or from an `Authorization: Bearer` header."""
    if api_key_header:
        return api_key_header.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
    return None
