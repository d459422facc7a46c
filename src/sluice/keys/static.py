"""Keys given in SLUICE_API_KEYS or `static_keys:`: held only as peppered digests, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from sluice.config import StaticKeyConfig
from sluice.errors import AuthenticationFailed
from sluice.keys.hashing import key_digest, looks_managed, static_key_id
from sluice.keys.principal import ANONYMOUS, Principal
from sluice.limits.options import Limits


def missing_key() -> AuthenticationFailed:
    """A new error each time: one instance raised again and again keeps every raise's traceback (and the frames
    it holds), ~8 kB per keyless request."""
    return AuthenticationFailed("You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or "
                                "'X-API-Key: KEY'.")


class StaticKeyRing:
    """Authenticates callers against a fixed set of keys, each known by its HMAC under the pepper (the managed
    keys' pepper: instances sharing it give a key the same id and hash)."""

    def __init__(self, keys: Iterable[str], *, pepper: bytes, allow_no_auth: bool = False,
                 scoped: Iterable[tuple[str, Principal]] = (), defaults: Limits | None = None) -> None:
        """`keys` have every scope and the `defaults` limits; each of `scoped` is a key and the principal (with its
        scopes and limits: `scoped_keys`) it stands for."""
        limits = defaults or Limits()
        self._pepper = pepper
        self._principals: dict[bytes, Principal] = {}
        keys = list(keys)
        scoped = list(scoped)
        self._managed_shaped = any(looks_managed(key) for key in [*keys, *(key for key, _ in scoped)])
        """Whether a static key has a managed key's shape: if none has, a managed-shaped key is not hashed here."""
        for key in keys:
            digest = key_digest(pepper, key)
            self._principals[digest] = Principal(key_id=static_key_id(digest.hex()), key_hash=digest.hex(),
                                                 limits=limits.default_key, budget=limits.default_budget)
        for key, principal in scoped:
            self._principals[key_digest(pepper, key)] = principal
        self._digests = list(self._principals)
        self.allow_no_auth = allow_no_auth

    async def authenticate(self, presented: str | None) -> Principal:
        """The principal for `presented`, or AuthenticationFailed; timing does not depend on the key."""
        if not presented:
            return self.anonymous()
        principal = self.find(presented)
        if principal is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return principal

    def anonymous(self) -> Principal:
        """The caller without a key: ANONYMOUS when serving without auth, else AuthenticationFailed."""
        if self.allow_no_auth:
            return ANONYMOUS
        raise missing_key()

    def find(self, presented: str) -> Principal | None:
        """The principal of a static key, or None; every known digest is compared, in constant time."""
        if not self._digests or (not self._managed_shaped and looks_managed(presented)):
            return None  # a managed key's shape: no static key has it, so one HMAC (the managed ring's) is enough
        digest = key_digest(self._pepper, presented)
        match = b""
        for known in self._digests:
            if hmac.compare_digest(known, digest):
                match = known
        return self._principals[match] if match else None


def scoped_keys(entries: Iterable[StaticKeyConfig], defaults: Limits, pepper: bytes) -> list[tuple[str, Principal]]:
    """The `static_keys:` of the config as (key, principal) pairs, each principal carrying the key's scopes and
    limits (`defaults` where the key sets none) and its peppered hash."""
    pairs = []
    for entry in entries:
        key = entry.key.get_secret_value()
        digest = key_digest(pepper, key).hex()
        pairs.append((key, Principal(
            key_id=entry.name or static_key_id(digest),
            key_hash=digest,
            name=entry.name,
            models=None if entry.models is None else frozenset(entry.models),
            projects=None if entry.projects is None else frozenset(entry.projects),
            providers=None if entry.providers is None else frozenset(entry.providers),
            services=None if entry.services is None else frozenset(entry.services),
            mcp=entry.mcp,
            admin=entry.admin,
            projects_only=entry.projects_only,
            limits=entry.limits or defaults.default_key,
            budget=entry.budget or defaults.default_budget,
        )))
    return pairs
