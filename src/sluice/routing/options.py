"""The `breaker:`, `retries:` and `health_check:` settings of one upstream provider (or deployment) in sluice.yaml."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sluice.errors import InvalidRequest
from sluice.providers.passthrough_paths import safe_query, safe_suffix

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


class HealthCheckOptions(_Strict):
    """Active health checks (named as Envoy's): every `interval_seconds`, `method` `path` (relative to the
    provider's base URL, with its credentials), within `timeout_seconds`; an answer outside `expected_status`, a
    timeout or a connection error is a failure. `unhealthy_threshold` consecutive failures take the deployments
    it covers out of their pools, `healthy_threshold` consecutive passes bring them back.

    `health_check: true` is `health_check: {}` (every default); `false` turns checks off (`enabled: false`)."""

    enabled: bool = True
    path: str = "/models"
    """Under the base URL: with `base_url: http://host:8000/v1`, `/models` probes `http://host:8000/v1/models`."""
    method: Literal["GET", "HEAD"] = "GET"
    interval_seconds: float = Field(10.0, gt=0)
    timeout_seconds: float = Field(2.0, gt=0)
    expected_status: tuple[int, ...] = Field((200,), min_length=1)
    unhealthy_threshold: int = Field(1, ge=1)
    healthy_threshold: int = Field(1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data is True or data is None:
            return {}
        if data is False:
            return {"enabled": False}
        return data

    @field_validator("path")
    @classmethod
    def _under_base_url(cls, path: str) -> str:
        suffix, _, query = path.partition("?")
        if not suffix.startswith("/"):
            raise ValueError("the path starts with '/' (it is appended to the provider's base_url)")
        try:
            safe_suffix(suffix)
            safe_query(query.encode("latin-1", "replace"))
        except InvalidRequest as exc:
            raise ValueError(exc.message) from None
        return path

    @field_validator("expected_status")
    @classmethod
    def _statuses(cls, statuses: tuple[int, ...]) -> tuple[int, ...]:
        for status in statuses:
            if not 100 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP status (100-599)")
        return statuses
