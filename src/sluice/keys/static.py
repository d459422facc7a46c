"""Keys given in SLUICE_API_KEYS or `static_keys:`: held only as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from sluice.config import StaticKeyConfig
from sluice.errors import AuthenticationFailed
from sluice.keys.principal import ANONYMOUS, Principal

_MISSING = AuthenticationFailed(
    "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'."
)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class StaticKeyRing:
    """Authenticates callers against a fixed set of keys."""

    def __init__(self, keys: Iterable[str], *, allow_no_auth: bool = False,
                 scoped: Iterable[tuple[str, Principal]] = ()) -> None:
        """`keys` are unlimited; each of `scoped` is a key and the principal (with its scopes) it stands for."""
        self._principals = {key_digest(key): Principal(key_id="key-" + key_digest(key).hex()[:12]) for key in keys}
        for key, principal in scoped:
            self._principals[key_digest(key)] = principal
        self._digests = list(self._principals)
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


def scoped_keys(entries: Iterable[StaticKeyConfig]) -> list[tuple[str, Principal]]:
    """The `static_keys:` of the config as (key, principal) pairs, each principal carrying the key's scopes."""
    pairs = []
    for entry in entries:
        key = entry.key.get_secret_value()
        key_id = entry.name or "key-" + key_digest(key).hex()[:12]
        pairs.append((key, Principal(
            key_id=key_id,
            projects=None if entry.projects is None else frozenset(entry.projects),
            providers=None if entry.providers is None else frozenset(entry.providers),
        )))
    return pairs


def presented_key(authorization: str | None, api_key_header: str | None) -> str | None:
    """The key from `X-API-Key` or from an `Authorization: Bearer` header."""
    if api_key_header:
        return api_key_header.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
    return None
