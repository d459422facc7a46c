"""The `keys:` section of sluice.yaml (managed keys, how long lookups are cached) and the `jwt:` section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class KeysConfig(BaseModel):
    """Managed API keys live in the request log's database (`request_log.database_url` or SLUICE_DATABASE_URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    managed: bool = True
    """Accept keys created with `sluice keys create` or `POST /admin/keys`; false accepts only static keys."""
    cache_ttl_seconds: float = Field(5.0, ge=0, le=300)
    """How long a lookup (hit or miss) is reused; a revocation reaches every instance within this time."""
    cache_size: int = Field(10_000, ge=1)
    """Entries kept per kind (known keys, unknown keys); unknown keys beyond it evict the oldest ones."""
    lookup_timeout_seconds: float = Field(2.0, gt=0, le=30)
    """A lookup that takes longer answers 503 rather than hold the request."""


ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                                   "EdDSA"})
"""What `jwt.algorithms` may list: signatures checked with a public key. `none` and the HMAC ones (`HS*`, where
anyone holding the "public" key could sign) are refused."""


class JwtScopes(BaseModel):
    """Which claims grant Sluice scopes (`models`, `providers`, `projects`, `services`, `mcp`, `admin`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: str | None = "scope"
    """A claim of grants, space-separated or a list: `models:NAME`, `providers:NAME`, `projects:NAME`,
    `services:NAME` (`NAME` may be `*`: every one of that kind), `mcp:GLOB` (an allow pattern of the `mcp` scope)
    and `admin`; other entries (`openid`…) are ignored."""
    models: str | None = None
    """A claim listing model names (a list, or a space-separated string), besides `claim`'s `models:` entries."""
    providers: str | None = None
    projects: str | None = None
    services: str | None = None
    mcp: str | None = None
    """A claim holding the `mcp` scope: `{"allow": [...], "deny": [...]}`, or allow patterns (a list, or a
    space-separated string). A token granting no pattern has no `mcp` scope (own MCP tools only), whatever
    `unlisted` says: MCP permissions fail closed."""
    admin: str | None = None
    """A claim that, when it is `true`, makes the caller an admin (the /admin API)."""
    unlisted: Literal["all", "none"] = "all"
    """A kind a token grants nothing of: `all` (no limit, like a key without that scope) or `none`."""


class JwtConfig(BaseModel):
    """JSON Web Tokens accepted in place of an API key (docs/keys.md, "JWT")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1)
    """The `iss` every token must carry."""
    audience: str | list[str] = Field(min_length=1)
    """The `aud` a token must name (one of these, if a list)."""
    algorithms: list[str] = Field(["RS256"], min_length=1)
    """The signature algorithms accepted (an allow-list; a token's `alg` outside it is refused)."""
    jwks_url: str | None = None
    """Where the issuer publishes its public keys (a JWKS); give this or `public_key_file`."""
    public_key_file: str | None = None
    """A PEM public key (or certificate) the tokens are signed for, relative to the working directory."""
    leeway_seconds: float = Field(30.0, ge=0, le=600)
    """Clock skew allowed on `exp` and `nbf`."""
    jwks_cache_seconds: float = Field(300.0, gt=0, le=86_400)
    """How long fetched keys are used before they are fetched again (in the background; the old ones serve)."""
    jwks_refresh_min_seconds: float = Field(10.0, ge=0, le=3600)
    """At most one fetch per this many seconds, however many tokens name an unknown `kid`."""
    jwks_timeout_seconds: float = Field(5.0, gt=0, le=60)
    key_id_claim: str = Field("sub", min_length=1)
    """The claim that identifies the caller: the key id is `jwt:` and its value (limits, budgets, the log)."""
    name_claim: str | None = None
    """A claim to use as the caller's name (`X-Sluice-Key-Name` upstream), e.g. `name` or `client_id`."""
    scopes: JwtScopes = JwtScopes()
    token_cache_size: int = Field(10_000, ge=1)
    """Verified tokens remembered (by their SHA-256, until they expire) so a token reused is checked once."""

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        for name in algorithms:
            if name not in ASYMMETRIC_ALGORITHMS:
                why = ("unsigned tokens are never accepted" if name.lower() == "none" else
                       "a shared-secret algorithm: whoever has the verification key could sign" if
                       name.upper().startswith("HS") else "not a supported signature algorithm")
                raise ValueError(f"{name!r} is refused ({why}); use some of {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}")
        return algorithms

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtConfig:
        if (self.jwks_url is None) == (self.public_key_file is None):
            raise ValueError("give one of jwks_url (the issuer's JWKS) or public_key_file (a PEM public key)")
        if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError("jwks_url: must be an http:// or https:// URL")
        if self.public_key_file is not None:
            from sluice.keys.jwks import read_public_key  # cryptography is loaded only for a `jwt:` section

            try:
                read_public_key(self.public_key_file)
            except (OSError, ValueError) as exc:
                raise ValueError(f"public_key_file: {exc}") from None
        return self
