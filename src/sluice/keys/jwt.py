"""JSON Web Tokens in place of API keys: recognised by shape, checked with PyJWT (signature, allow-listed `alg`,
`iss`, `aud`, `exp` and `nbf` with leeway), mapped to a Principal, and remembered by hash until they expire."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any

import jwt
import orjson

from sluice.errors import AuthenticationFailed
from sluice.keys.hashing import key_hash
from sluice.keys.jwks import JwksKeys, KeySource, PemKey
from sluice.keys.options import JwtConfig
from sluice.keys.principal import Principal
from sluice.limits.options import Limits
from sluice.mcp.options import McpScope

logger = logging.getLogger("sluice.keys")

KINDS = ("models", "providers", "projects", "services")
"""The scopes a token's claims may grant, besides `admin`."""
KEY_ID_PREFIX = "jwt:"


def looks_like_jwt(presented: str) -> bool:
    """Three base64url parts whose first decodes to a JSON object naming an `alg` (what a JWS in compact form is)."""
    if presented.count(".") != 2:
        return False
    encoded = presented[:presented.index(".")]
    try:
        header = orjson.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(header, dict) and isinstance(header.get("alg"), str)


def incorrect_token() -> AuthenticationFailed:
    """The one answer for every token that does not work: the same as for an incorrect API key."""
    return AuthenticationFailed("Incorrect API key provided.")


def missing_token() -> AuthenticationFailed:
    return AuthenticationFailed("You didn't provide a token. Send it as 'Authorization: Bearer TOKEN'.")


class Refused(Exception):
    """Why a token was refused, for the debug log only."""


class JwtValidator:
    """Checks tokens against one issuer's keys; a verified token's principal is kept (by the token's SHA-256) until
    the token expires, at most `jwks_cache_seconds`, in a bounded LRU."""

    def __init__(self, config: JwtConfig, keys: KeySource, *, pepper: bytes, defaults: Limits) -> None:
        self.config = config
        self.keys = keys
        self._pepper = pepper
        self._defaults = defaults
        self._algorithms = frozenset(config.algorithms)
        self._audience = config.audience
        self._decoder = jwt.PyJWT({"require": ["exp"], "enforce_minimum_key_length": True})
        self._verified: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    async def authenticate(self, token: str) -> Principal:
        """The principal `token` stands for; AuthenticationFailed (401, the incorrect-key answer) for any token
        that fails, whatever the reason; ServiceUnavailable (503) while the issuer's keys cannot be had at all."""
        remembered = self.remembered(token)
        if remembered is not None:
            return remembered
        digest = _digest(token)
        try:
            principal, valid_until = await self._verify(token)
        except (Refused, jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            logger.debug("jwt: refused a token: %s: %s", type(exc).__name__, exc)
            raise incorrect_token() from None
        while len(self._verified) >= self.config.token_cache_size:
            self._verified.popitem(last=False)
        self._verified[digest] = (principal, valid_until)
        return principal

    def remembered(self, token: str) -> Principal | None:
        """The principal of a token verified before and not expired since (~1 µs), else None."""
        digest = _digest(token)
        remembered = self._verified.get(digest)
        if remembered is None:
            return None
        principal, valid_until = remembered
        if time.time() < valid_until:
            self._verified.move_to_end(digest)
            return principal
        del self._verified[digest]
        return None

    @staticmethod
    def recognises(presented: str) -> bool:
        return looks_like_jwt(presented)

    async def aclose(self) -> None:
        await self.keys.aclose()

    async def _verify(self, token: str) -> tuple[Principal, float]:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise Refused(f"algorithm {algorithm!r} is not in jwt.algorithms")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Refused("kid is not a string")
        key = await self.keys.key(kid, algorithm)
        if key is None:
            raise Refused(f"no key for kid {kid!r} and {algorithm}")
        claims = self._decoder.decode(token, key, algorithms=[algorithm], audience=self._audience,
                                      issuer=self.config.issuer, leeway=self.config.leeway_seconds)
        principal = self._principal(claims)
        expires = claims["exp"]  # required, and a number: PyJWT checked it
        return principal, min(float(expires) + self.config.leeway_seconds, time.time() + self.config.jwks_cache_seconds)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        identity = claims.get(self.config.key_id_claim)
        if not isinstance(identity, str) or not identity:
            raise Refused(f"no {self.config.key_id_claim!r} claim (a non-empty string)")
        key_id = KEY_ID_PREFIX + identity
        subject, name = claims.get("sub"), claims.get(self.config.name_claim) if self.config.name_claim else None
        scopes, admin = granted(claims, self.config)
        return Principal(
            key_id=key_id, key_hash=key_hash(self._pepper, key_id),
            name=name if isinstance(name, str) else None,
            jwt_subject=subject if isinstance(subject, str) else None,
            models=scopes["models"], providers=scopes["providers"], projects=scopes["projects"],
            services=scopes["services"], admin=admin, mcp=mcp_granted(claims, self.config),
            limits=self._defaults.default_key, budget=self._defaults.default_budget,
        )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def granted(claims: dict[str, Any], config: JwtConfig) -> tuple[dict[str, frozenset[str] | None], bool]:
    """Each kind's names a token's claims grant (None: every one) and whether it is an admin."""
    mapping = config.scopes
    names: dict[str, set[str]] = {kind: set() for kind in KINDS}
    admin = False
    if mapping.claim is not None:
        for entry in _entries(claims.get(mapping.claim)):
            kind, colon, name = entry.partition(":")
            if entry == "admin":
                admin = True
            elif colon and kind in names and name:
                names[kind].add(name)
    for kind in KINDS:
        claim = getattr(mapping, kind)
        if claim is not None:
            names[kind].update(_entries(claims.get(claim)))
    if mapping.admin is not None and claims.get(mapping.admin) is True:
        admin = True
    everything = mapping.unlisted == "all"
    scopes = {kind: None if "*" in listed or (everything and not listed) else frozenset(listed)
              for kind, listed in names.items()}
    return scopes, admin


def mcp_granted(claims: dict[str, Any], config: JwtConfig) -> McpScope | None:
    """The `mcp` scope a token's claims grant: `mcp:GLOB` entries of `scopes.claim` and the `scopes.mcp` claim
    (allow patterns, or an object with `allow` and `deny`); None (no upstream MCP tool) when none is granted."""
    mapping = config.scopes
    allow: list[str] = []
    deny: list[str] = []
    if mapping.claim is not None:
        allow.extend(entry[len("mcp:"):] for entry in _entries(claims.get(mapping.claim))
                     if entry.startswith("mcp:") and len(entry) > len("mcp:"))
    if mapping.mcp is not None:
        value = claims.get(mapping.mcp)
        if isinstance(value, dict):
            allow.extend(_entries(value.get("allow")))
            deny.extend(_entries(value.get("deny")))
        else:
            allow.extend(_entries(value))
    if not allow:
        return None
    return McpScope(allow=tuple(allow), deny=tuple(deny))


def _entries(value: object) -> list[str]:
    """A claim's entries: a space-separated string (OAuth's `scope`) or a list of strings (`scp`, `roles`)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item]
    return []


def build_validator(config: JwtConfig, *, pepper: bytes, defaults: Limits) -> JwtValidator:
    """The validator for the `jwt:` section: the JWKS is fetched on first use; a PEM file is read now."""
    keys: KeySource
    if config.jwks_url is not None:
        keys = JwksKeys(config.jwks_url, cache_seconds=config.jwks_cache_seconds,
                        refresh_min_seconds=config.jwks_refresh_min_seconds, timeout=config.jwks_timeout_seconds)
    else:
        assert config.public_key_file is not None
        keys = PemKey(config.public_key_file)
    return JwtValidator(config, keys, pepper=pepper, defaults=defaults)
