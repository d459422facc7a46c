"""The `breaker:` and `retries:` settings of one upstream provider in sluice.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Strategy = Literal["round_robin", "weighted", "least_busy", "latency", "usage"]
"""How a model's pool picks a deployment for each request (routing/balance.py)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BreakerOptions(_Strict):
    """A circuit breaker per provider: after `failure_threshold` consecutive failures (connection errors,
    timeouts, 5xx) requests are refused at once for `open_seconds`, then `half_open_probes` are let through."""

    enabled: bool = True
    failure_threshold: int = Field(5, ge=1)
    open_seconds: float = Field(30.0, gt=0)
    half_open_probes: int = Field(1, ge=1)


class RetryOptions(_Strict):
    """Bounded retries of a call that failed before any byte of a reply was sent to the client."""

    attempts: int = Field(2, ge=0)
    """Extra tries after the first one; 0 turns retries off."""
    backoff_initial_seconds: float = Field(0.2, ge=0)
    backoff_max_seconds: float = Field(2.0, ge=0)
    max_retry_after_seconds: float = Field(5.0, ge=0)
    """An upstream 429/503 whose `Retry-After` asks for a longer wait than this is passed on, not retried."""
