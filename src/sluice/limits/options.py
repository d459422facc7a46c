"""The `limits:` section of sluice.yaml and the per-key, per-model limit and budget specs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BudgetPeriod = Literal["daily", "weekly", "monthly", "total"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(_Strict):
    """Limits on one key, one model or one client address; None means no limit of that kind."""

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    """Charged with an estimate before the call and corrected with the usage the upstream reports."""
    max_concurrent: int | None = Field(None, ge=1)

    @property
    def unlimited(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None and self.max_concurrent is None


NO_LIMIT = RateLimit()


class Budget(_Strict):
    """A spend ceiling in USD per period (UTC calendar day, ISO week, calendar month, or for the key's life)."""

    usd: float = Field(ge=0)
    period: BudgetPeriod = "monthly"


class Limits(_Strict):
    """Request limits enforced at the edge, and where their shared state lives."""

    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    body_read_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    """How long a request body may take to arrive once its headers have; past it: 408 and the connection closed."""
    backend: Literal["auto", "memory", "redis"] = "auto"
    """Where limit state lives: `auto` is Redis when SLUICE_REDIS_URL is set, else this process's memory."""
    redis_timeout_seconds: float = Field(0.1, gt=0, le=5)
    """How long a request may wait on Redis before `on_backend_failure` decides."""
    on_backend_failure: Literal["open", "closed"] = "open"
    """Redis unreachable: `open` lets requests through (logged, counted), `closed` answers 503."""
    per_ip: RateLimit = NO_LIMIT
    """Per client address, checked before authentication (unauthenticated abuse)."""
    default_key: RateLimit = NO_LIMIT
    """For keys that set no limits of their own (SLUICE_API_KEYS keys included)."""
    default_budget: Budget | None = None
    """For keys that set no budget of their own (SLUICE_API_KEYS keys included)."""
    trusted_proxies: list[str] = []
    """Addresses (or CIDRs) whose X-Forwarded-For names the client, e.g. the nginx in front."""
    redis_prefix: str = "sluice:"
    """Prefix of every Redis key the limiter writes (instances that share limits must share it)."""
    redis_local_share: float = Field(0.01, ge=0, le=0.5)
    """With Redis: the share of a rate policy's quota an instance takes at a time and spends without a round trip
    (never more than the quota in all; an instance may hold this much that others cannot use until it is spent or,
    after 2 s unused, given back). Policies where it comes to under 10 units, and concurrency limits, are charged
    exactly; 0 charges every policy exactly (one Redis round trip per request)."""
