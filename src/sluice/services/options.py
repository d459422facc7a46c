"""The `services:` and `routes:` sections of sluice.yaml: instances of each service, and the rules that send a
request to one."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sluice.http.cors import RouteCors
from sluice.routing.options import BreakerOptions, HealthCheckOptions, RetryOptions

RESERVED_PREFIXES = ("/v1", "/provider", "/projects", "/admin", "/health", "/metrics", "/docs", "/redoc",
                     "/openapi.json", "/demo", "/mcp", "/ui")
"""Paths the gateway serves itself: a route may not shadow them."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceConfig(_Strict):
    """One instance of a service: its base URL and its share of the traffic."""

    url: str = Field(pattern=r"^https?://")
    weight: float = Field(1.0, gt=0)


class ServiceTimeouts(_Strict):
    """A service's timeouts, in seconds: to connect, between two reads, and (`total`, off unless set) for a whole
    call, from connecting to the reply's last byte (a route's `timeout_seconds` replaces it for that route)."""

    connect: float = Field(5.0, gt=0)
    read: float = Field(30.0, gt=0)
    total: float | None = Field(None, gt=0)


class HashOn(_Strict):
    """What `consistent_hash` keeps a caller on one instance by: a request header or a cookie."""

    header: str | None = None
    cookie: str | None = None

    @model_validator(mode="after")
    def _one(self) -> HashOn:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("give exactly one of header: or cookie:")
        return self


class ServiceConfig(_Strict):
    """A service: its instances and how they are balanced, timed out, retried and broken off."""

    instances: list[InstanceConfig] = Field(min_length=1)
    strategy: Literal["round_robin", "weighted", "least_busy", "latency", "random", "consistent_hash"] = "weighted"
    hash_on: HashOn | None = None
    """What `consistent_hash` hashes (required for it)."""
    timeout: ServiceTimeouts = ServiceTimeouts()
    retries: RetryOptions = RetryOptions(attempts=2)
    """Retried for idempotent methods only (GET, HEAD, OPTIONS, PUT, DELETE) unless the route says otherwise."""
    breaker: BreakerOptions = BreakerOptions()
    health_check: HealthCheckOptions | None = None
    """Active checks of every instance (`path` under the instance's URL); `true` probes `GET /health` every 10 s.
    Off unless set."""

    @field_validator("health_check", mode="before")
    @classmethod
    def _check_path(cls, value: Any) -> Any:
        if value is True or value == {}:
            return {"path": "/health"}
        if isinstance(value, dict) and "path" not in value and value.get("enabled", True):
            return {**value, "path": "/health"}
        return value

    @model_validator(mode="after")
    def _hash(self) -> ServiceConfig:
        if self.strategy == "consistent_hash" and self.hash_on is None:
            raise ValueError("strategy consistent_hash needs hash_on: {header: …} or {cookie: …}")
        return self


class SplitTarget(_Strict):
    service: str
    weight: float = Field(gt=0)


class Sticky(HashOn):
    """Keep a caller on one side of a split by a header or cookie value."""


class HeaderEdits(_Strict):
    """Headers to set (replacing any of the same name) and to remove."""

    add: dict[str, str] = {}
    remove: list[str] = []


class Rewrite(_Strict):
    """A regular-expression rewrite of the path (Python `re.sub` syntax: `\\1` for groups)."""

    pattern: str
    replacement: str


class RouteCache(_Strict):
    """A route's response cache (services/cache.py): a shared HTTP cache of its GET and HEAD replies."""

    enabled: bool = True
    max_entries: int = Field(1000, gt=0)
    """This route's entries in memory, least recently used evicted first (Redis expires entries by their TTL)."""
    max_bytes: int = Field(16 << 20, gt=0)
    """The bodies' bytes this route keeps in memory."""
    default_ttl_seconds: float = Field(0.0, ge=0)
    """How long a reply without max-age, s-maxage or Expires is fresh; 0: such a reply is not stored (unless it
    has a validator, then it is revalidated before each use)."""


class RouteConfig(_Strict):
    """One routing rule: what it matches and where (and how) the request goes."""

    path: str | None = None
    """`/exact`, `/prefix/**` (the prefix and everything below it), `*` for one segment."""
    path_regex: str | None = None
    """A regular expression the whole path must match (instead of `path`)."""
    methods: list[str] | None = None
    headers: dict[str, str] = {}
    """Request headers that must have exactly these values."""
    query: dict[str, str] = {}
    """Query parameters that must have exactly these values."""
    service: str | None = None
    split: list[SplitTarget] | None = None
    """Weighted services (canary releases) instead of one `service`."""
    sticky: Sticky | None = None
    strip_prefix: str | None = None
    add_prefix: str | None = None
    rewrite: Rewrite | None = None
    request_headers: HeaderEdits = HeaderEdits()
    response_headers: HeaderEdits = HeaderEdits()
    timeout_seconds: float | None = Field(None, gt=0)
    max_body_bytes: int | None = Field(None, ge=0)
    websocket: bool = False
    """A WebSocket route (http/websocket.py): handshakes it matches (as a GET) are proxied, frames relayed."""
    websocket_max_message_bytes: int = Field(1024 * 1024, gt=0)
    """The largest WebSocket message either side may send through this route; a larger one closes the
    connection with 1009 both ways."""
    websocket_idle_seconds: float = Field(300.0, gt=0)
    """A WebSocket connection with no message either way for this long is closed with 1001 both ways."""
    auth: Literal["public", "key", "jwt"] = "key"
    retry_non_idempotent: bool = False
    cors: RouteCors = None
    """This route's CORS policy (http/cors.py), in place of the global `cors:`; `false`: none, the service answers
    preflights and sets its own CORS headers."""
    cache: RouteCache | None = None
    """Cache this route's GET and HEAD replies with HTTP semantics (RFC 9111); `true` for the defaults."""

    @field_validator("cache", mode="before")
    @classmethod
    def _cache(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False or (isinstance(value, dict) and value.get("enabled") is False):
            return None
        return value

    @model_validator(mode="after")
    def _shape(self) -> RouteConfig:
        if (self.path is None) == (self.path_regex is None):
            raise ValueError("give exactly one of path: or path_regex:")
        if (self.service is None) == (self.split is None):
            raise ValueError("give exactly one of service: or split:")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"path {self.path!r} must start with /")
        return self

    @property
    def services(self) -> list[str]:
        return [self.service] if self.service is not None else [target.service for target in self.split or []]
